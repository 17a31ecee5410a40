#!/bin/sh
# The host as the deploy, its verification and drift compare it: one run prints every section, each
# framed by `@@mailserver-section NAME` and `@@mailserver-section-rc STATUS` (read by engine/script.py).
#
#   snapshot.sh -F debian|rhel [-p PACKAGE]... [-u USER]... [-g GROUP]... [-f PATH]...
#               [-s UNIT]... [-t PART]... [-k SOCKET]... [-m MAILBOX_BASE]
#               [-w SECONDS [-l PORT]...]
#
# -s units are reported as `unit|ActiveState|UnitFileState`; -t names units the -s units may consist of
# (a wrapper unit is only as active as its parts). With -w, it first waits up to SECONDS for every -l
# port to listen and every -k socket to exist (a service restarted a moment ago). Only paths go on the
# command line and only digests of password hashes leave the host.
set -u
nl='
'
family=debian packages='' users='' groups='' paths='' units='' parts='' sockets='' ports='' base='' wait=0
while getopts F:p:u:g:f:s:t:k:m:w:l: opt; do
  case $opt in
    F) family=$OPTARG ;;
    p) packages="$packages$OPTARG$nl" ;;
    u) users="$users$OPTARG$nl" ;;
    g) groups="$groups$OPTARG$nl" ;;
    f) paths="$paths$OPTARG$nl" ;;
    s) units="$units$OPTARG$nl" ;;
    t) parts="$parts$OPTARG$nl" ;;
    k) sockets="$sockets$OPTARG$nl" ;;
    m) base=$OPTARG ;;
    w) wait=$OPTARG ;;
    l) ports="$ports$OPTARG$nl" ;;
    *) exit 2 ;;
  esac
done

section() { echo "@@mailserver-section $1"; }
done_section() { echo "@@mailserver-section-rc $1"; }

# each of a newline-separated list, as the arguments of "$@" for the command that follows
each() {
  list=$1; shift
  old_ifs=$IFS; IFS=$nl
  # shellcheck disable=SC2086  # split on newlines only, on purpose
  set -- "$@" $list
  IFS=$old_ifs
  "$@"
}

listening() { ss -Hltn 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }'; }

ready() {
  have=$(listening)
  for p in $ports; do
    printf '%s\n' "$have" | grep -qx "$p" || return 1
  done
  old_ifs=$IFS; IFS=$nl
  for s in $sockets; do
    [ -S "$s" ] || { IFS=$old_ifs; return 1; }
  done
  IFS=$old_ifs
  return 0
}

if [ "$wait" -gt 0 ]; then
  i=0
  while [ "$i" -lt $((wait * 10)) ] && ! ready; do
    sleep 0.1
    i=$((i + 1))
  done
fi

section packages
if [ -n "$packages" ]; then
  if [ "$family" = debian ]; then
    # shellcheck disable=SC2016  # dpkg-query's own ${field} syntax
    each "$packages" dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Version}\n' 2>/dev/null
  else
    each "$packages" rpm -q --qf 'ii |%{NAME}|%{VERSION}-%{RELEASE}\n' 2>/dev/null | grep '|'
  fi
fi
done_section 0

section accounts
[ -z "$users" ] || each "$users" getent passwd
[ -z "$groups" ] || each "$groups" getent group
if [ -n "$users" ]; then
  each "$users" getent shadow 2>/dev/null | while IFS=: read -r name hash _rest; do
    printf 'H:%s:' "$name"
    printf %s "$hash" | sha256sum
  done
fi
done_section 0

section paths
if [ -n "$paths" ]; then
  each "$paths" stat -c 'S|%F|%U|%G|%a|%Y|%n' 2>/dev/null
  files=''
  old_ifs=$IFS; IFS=$nl
  for p in $paths; do
    [ -f "$p" ] && files="$files$p$nl"
  done
  IFS=$old_ifs
  # regular files only (a FIFO would block sha256sum), all hashed by one sha256sum
  [ -z "$files" ] || each "$files" sha256sum -- 2>/dev/null
fi
done_section 0

section units
if [ -n "$units" ]; then
  want=$(printf '%s' "$units" | grep -c .)
  # One `systemctl show` for the units and their known parts. A wrapper unit (a oneshot that stays
  # active) is only as active as the parts it consists of; a unit with a process of its own (another
  # Type) is judged alone: its ConsistsOf may only name template instances that conflict with it.
  # Parts nobody listed are asked in a second call; a unit generated from a SysV script is asked
  # `is-enabled`, which reads its rc.d links.
  each "$units$parts" systemctl show -p Id,ActiveState,UnitFileState,ConsistsOf,Type 2>/dev/null \
    | awk -v want="$want" -v names="$units" '
      function block(b,  f, i, k, v) {
        id = a = e = c = t = ""
        split(b, f, "\n")
        for (i in f) {
          k = f[i]; sub(/=.*/, "", k); v = substr(f[i], length(k) + 2)
          if (k == "Id") id = v; else if (k == "ActiveState") a = v
          else if (k == "UnitFileState") e = v; else if (k == "ConsistsOf") c = v
          else if (k == "Type") t = v
        }
        if (t != "" && t != "oneshot") c = ""
      }
      BEGIN { RS = ""; split(names, U, "\n") }
      { block($0); n++; if (n <= want) { I[n] = id; A[n] = a; E[n] = e; C[n] = c } else S[id] = a }
      END {
        q = ""
        for (j = 1; j <= want; j++) {
          split(C[j], ps, " ")
          for (p in ps) if (ps[p] != "" && !(ps[p] in S) && !(ps[p] in Q)) { Q[ps[p]] = 1; q = q " '\''" ps[p] "'\''" }
        }
        if (q != "") {
          cmd = "systemctl show -p Id,ActiveState" q " 2>/dev/null"
          while ((cmd | getline b) > 0) { block(b); S[id] = a }
          close(cmd)
        }
        for (j = 1; j <= want; j++) {
          a = A[j]; e = E[j]; split(C[j], ps, " ")
          for (p in ps) if (a == "active" && ps[p] != "" && S[ps[p]] != "active") a = (S[ps[p]] == "" ? "unknown" : S[ps[p]])
          if (e == "generated") { cmd = "systemctl is-enabled '\''" I[j] "'\'' 2>/dev/null"; if ((cmd | getline v) > 0) e = v; close(cmd) }
          printf "%s|%s|%s\n", U[j], a, e
        }
      }'
fi
done_section 0

section ports
ss -Hltn 2>/dev/null
done_section 0

section sockets
old_ifs=$IFS; IFS=$nl
for s in $sockets; do
  [ -S "$s" ] && echo "$s"
done
IFS=$old_ifs
done_section 0

section mailboxes
[ -z "$base" ] || find "$base" -mindepth 2 -maxdepth 2 -type d 2>/dev/null
done_section 0
