#!/bin/sh
# rollback WHY STAGE UNITS MARKERS: put back every live file the run replaced (kept under STAGE/backup;
# a NAME.created note stands for a file that did not exist before, whose new version is removed),
# remove the MARKERS (pending reloads: the restart applies the restored files), restart UNITS, and say
# what happened on stderr. Always returns 1: the caller fails with it.
rollback() {
  why=$1 stage=$2 units=$3 markers=$4
  backup="$stage/backup"
  n=0
  if [ -d "$backup" ]; then
    list=$(cd "$backup" && find . -type f | sed 's|^\.||')
    old_ifs=$IFS
    IFS='
'
    for f in $list; do
      case $f in
        *.created) rm -f "${f%.created}" ;;
        *) cp -p "$backup$f" "$f.mailserver-new" && mv -f "$f.mailserver-new" "$f" ;;
      esac
      n=$((n + 1))
    done
    IFS=$old_ifs
  fi
  rm -rf "$backup"
  # shellcheck disable=SC2086  # lists of unit names and marker paths, split on purpose
  rm -f $markers
  # shellcheck disable=SC2086
  systemctl restart $units
  if [ "$n" -gt 0 ]; then
    echo "$why: rolled back, $n file(s) of the previous config restored and $units restarted" >&2
  else
    echo "$why: nothing to roll back" >&2
  fi
  return 1
}
