#!/bin/sh
# Accounts and directories of the mail stack, made to be as the manifest says whatever exists already:
#
#   system.sh [-g NAME:GID:SYSTEM]... [-u NAME:UID:GROUP:HOME:SHELL:SYSTEM:CREATE_HOME:GROUPS:APPEND]...
#             [-p CHPASSWD_FILE] [-d OWNER:GROUP:MODE:PATH]...
#
# Empty fields are "not managed" (UID, GROUP, HOME). GROUPS is comma-separated supplementary groups;
# APPEND=yes only ever adds to them (never removes what a package gave the user). CHPASSWD_FILE holds
# `user:hash` lines for `chpasswd -e`; it is read and removed, so no hash is ever on a command line.
# Directories get their owner, group and mode (the mode is spelled with its special bits, so a
# directory under a setgid parent such as /var/mail does not keep the bit by inheritance).
set -u
nl='
'
groups='' users='' passwords='' dirs=''
while getopts g:u:p:d: opt; do
  case $opt in
    g) groups="$groups$OPTARG$nl" ;;
    u) users="$users$OPTARG$nl" ;;
    p) passwords=$OPTARG ;;
    d) dirs="$dirs$OPTARG$nl" ;;
    *) exit 2 ;;
  esac
done
IFS=$nl
set -e

for g in $groups; do
  name=${g%%:*} rest=${g#*:}
  gid=${rest%%:*} system=${rest#*:}
  if have=$(getent group "$name"); then
    cur=$(printf '%s' "$have" | cut -d: -f3)
    [ -z "$gid" ] || [ "$gid" = "$cur" ] || groupmod --gid "$gid" "$name"
  else
    set --
    [ "$system" != yes ] || set -- "$@" --system
    [ -z "$gid" ] || set -- "$@" --gid "$gid"
    groupadd "$@" "$name"
  fi
done

for u in $users; do
  IFS=: read -r name uid group home shell system create groups_of append <<EOT
$u
EOT
  IFS=$nl
  if have=$(getent passwd "$name"); then
    set --
    cur_uid=$(printf '%s' "$have" | cut -d: -f3)
    cur_gid=$(printf '%s' "$have" | cut -d: -f4)
    cur_home=$(printf '%s' "$have" | cut -d: -f6)
    cur_shell=$(printf '%s' "$have" | cut -d: -f7)
    [ -z "$uid" ] || [ "$uid" = "$cur_uid" ] || set -- "$@" --uid "$uid"
    [ -z "$home" ] || [ "$home" = "$cur_home" ] || set -- "$@" --home "$home"
    [ "$shell" = "$cur_shell" ] || set -- "$@" --shell "$shell"
    if [ -n "$group" ] && [ "$(getent group "$group" | cut -d: -f3)" != "$cur_gid" ]; then
      set -- "$@" --gid "$group"
    fi
    if [ -n "$groups_of" ]; then
      missing=''
      old_ifs=$IFS; IFS=,
      for g in $groups_of; do
        id -nG "$name" | tr ' ' '\n' | grep -qx "$g" || missing="$missing${missing:+,}$g"
      done
      IFS=$old_ifs
      if [ -n "$missing" ]; then
        if [ "$append" = yes ]; then set -- "$@" --append --groups "$missing"; else set -- "$@" --groups "$groups_of"; fi
      fi
    fi
    [ $# -eq 0 ] || usermod "$@" "$name"
  else
    set -- --shell "$shell"
    [ "$system" != yes ] || set -- "$@" --system
    [ -z "$uid" ] || set -- "$@" --uid "$uid"
    [ -z "$group" ] || set -- "$@" --gid "$group"
    [ -z "$home" ] || set -- "$@" --home-dir "$home"
    if [ "$create" = yes ]; then set -- "$@" --create-home; else set -- "$@" --no-create-home; fi
    [ -z "$groups_of" ] || set -- "$@" --groups "$groups_of"
    [ -n "$group" ] || [ "$system" = yes ] || set -- "$@" --user-group
    useradd "$@" "$name"
  fi
done

if [ -n "$passwords" ]; then
  rc=0
  chpasswd -e <"$passwords" || rc=$?
  rm -f "$passwords"
  [ "$rc" -eq 0 ]
fi

for d in $dirs; do
  owner=${d%%:*} rest=${d#*:}
  group=${rest%%:*} rest=${rest#*:}
  mode=${rest%%:*} path=${rest#*:}
  install -d -o "$owner" -g "$group" "$path"
  chmod "$mode" "$path"
done
