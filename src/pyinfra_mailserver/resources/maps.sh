#!/bin/sh
# Build Postfix lookup tables aside and rename them into place:
#
#   maps.sh STAGE COMMAND:TYPE:SOURCE:OUTPUT...
#
# COMMAND is postmap or postalias, OUTPUT the indexed file it writes next to SOURCE. Each table is built
# from a copy of its source in the root-only STAGE (-o: the copy is root's, whatever the source's owner),
# given its source's owner and mode (a relay password table stays root-only), copied next to the live
# table and renamed over it: Postfix never reads a half-written table, and a run killed mid-build leaves
# the live table as it was (older than its source, so the next run rebuilds it).
set -u
umask 077
stage=$1
shift
work="$stage/maps"
rm -rf "$work" && mkdir -p "$work" || exit 1
i=0
for spec in "$@"; do
  cmd=${spec%%:*} rest=${spec#*:}
  type=${rest%%:*} rest=${rest#*:}
  src=${rest%%:*} out=${rest#*:}
  # a numbered copy: two sources may share a file name (/etc/aliases, /etc/postfix/aliases)
  tmp="$work/$i-$(basename "$src")"
  built="$tmp${out#"$src"}"
  new="$out.mailserver-new"
  if ! { cp -p "$src" "$tmp" && "$cmd" -o "$type:$tmp" && cp "$built" "$new" \
    && chown --reference="$src" "$new" && chmod --reference="$src" "$new" && mv -f "$new" "$out"; }; then
    echo "could not build $type:$src" >&2
    exit 1
  fi
  i=$((i + 1))
done
rm -rf "$work"
