#!/bin/sh
# Put a service's changed files live, all or none:
#
#   install-files.sh -S STAGE [-t TAR] [-c CONFIG_DIR [-x MODE:CHECK]... [-r PROBE]... -n SERVICE]
#                    [-i PATH]... [-b PATH]... [-m MARKER]... [-a OWNER:GROUP:MODE:PATH]...
#
# TAR (uploaded into the root-only STAGE) holds the new files at their host paths, with owner, group and
# mode; it is unpacked under STAGE/root, so no file is ever readable by others on the host, even briefly.
# With CONFIG_DIR, the checks run first against a copy of the live CONFIG_DIR with the new files laid
# over it, as `$tree`: MODE `status` fails on a non-zero exit, `silent` also on any output on stderr
# (postconf warns and exits 0), `pty` runs the check on a terminal (postfix writes its errors only to
# syslog otherwise). A failed check leaves everything live as it was and prints the checker's message.
# A PROBE prints what must be equal between the live and the new tree for a reload to be enough;
# otherwise SERVICE is marked for a restart (STAGE/restart-SERVICE). Each -b PATH is backed up
# (STAGE/backup, for a rollback) before it is replaced, and each -m MARKER left (the services those
# files reload wait for it: an interrupted run still reloads). Then each -i PATH is copied next to its
# target and renamed over it; -a fixes the owner and mode of a file whose content is already right.
set -u
umask 077
nl='
'
stage='' tar='' config='' checks='' probes='' service='' installs='' backups='' markers='' attrs=''
while getopts S:t:c:x:r:n:i:b:m:a: opt; do
  case $opt in
    S) stage=$OPTARG ;;
    t) tar=$OPTARG ;;
    c) config=$OPTARG ;;
    x) checks="$checks$OPTARG$nl" ;;
    r) probes="$probes$OPTARG$nl" ;;
    n) service=$OPTARG ;;
    i) installs="$installs$OPTARG$nl" ;;
    b) backups="$backups$OPTARG$nl" ;;
    m) markers="$markers$OPTARG$nl" ;;
    a) attrs="$attrs$OPTARG$nl" ;;
    *) exit 2 ;;
  esac
done
root="$stage/root"
IFS=$nl

cleanup() {
  for f in $installs; do rm -f "$root$f"; done
  [ -z "$config" ] || rm -rf "$stage/check"
}
fail() {
  printf '%s\n' "$1" >&2
  [ -z "${2:-}" ] || printf '%s\n' "$2" | tr -d '\r' >&2
  cleanup
  exit 1
}

if [ -n "$tar" ]; then
  mkdir -p "$root" && tar -xpf "$tar" -C "$root" --same-owner --no-overwrite-dir
  rc=$?
  rm -f "$tar"
  [ "$rc" -eq 0 ] || fail "could not unpack the new files"
fi

if [ -n "$config" ]; then
  tree="$stage/check$config"
  if ! { rm -rf "$tree" && mkdir -p "$tree" && cp -a "$config/." "$tree/"; }; then
    fail "could not copy $config"
  fi
  for f in $installs; do
    case $f in
      "$config"/*) cp -p "$root$f" "$tree${f#"$config"}" || fail "could not stage $f" ;;
    esac
  done
  export tree
  for check in $checks; do
    mode=${check%%:*} cmd=${check#*:}
    case $mode in
      pty) out=$({ script -qec "$cmd" /dev/null 1>&2; } 2>&1 >/dev/null </dev/null) ;;
      *) out=$(eval "$cmd" 2>&1 >/dev/null) ;;
    esac
    rc=$?
    [ "$rc" -eq 0 ] || fail "check failed: $cmd (exit $rc)" "$out"
    [ "$mode" != silent ] || [ -z "$out" ] || fail "check failed: $cmd printed warnings" "$out"
  done
  live_tree=$config
  for probe in $probes; do
    new=$(eval "$probe" 2>/dev/null)
    old=$(tree=$live_tree; eval "$probe" 2>/dev/null)
    [ "$old" = "$new" ] || touch "$stage/restart-$service"
  done
fi

for f in $backups; do
  b="$stage/backup$f"
  # the first copy is the last config known to work, even across an interrupted run
  if [ ! -e "$b" ] && [ ! -e "$b.created" ]; then
    mkdir -p "$(dirname "$b")" || fail "could not back up $f"
    if [ -e "$f" ]; then cp -p "$f" "$b"; else touch "$b.created"; fi || fail "could not back up $f"
  fi
done
for m in $markers; do touch "$m" || fail "could not mark $m"; done

for f in $installs; do
  if ! { mkdir -p "$(dirname "$f")" && cp -p "$root$f" "$f.mailserver-new" && mv -f "$f.mailserver-new" "$f"; }; then
    fail "could not install $f"
  fi
  rm -f "$root$f"
done
for a in $attrs; do
  owner=${a%%:*} rest=${a#*:}
  group=${rest%%:*} rest=${rest#*:}
  mode=${rest%%:*} path=${rest#*:}
  if ! { chown "$owner:$group" "$path" && chmod "$mode" "$path"; }; then
    fail "could not set $owner:$group $mode on $path"
  fi
done
cleanup
