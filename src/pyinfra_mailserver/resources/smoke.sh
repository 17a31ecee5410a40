#!/bin/sh
# After a service was reloaded: a TLS handshake on every TLS port and every SASL socket present, all at
# once; when one fails, roll back (rollback.sh) and fail naming what failed.
#
#   smoke.sh -S STAGE [-p PORT:NAME[:STARTTLS]]... [-k SOCKET]... [-R UNIT]... [-M MARKER]...
#
# STARTTLS is openssl's protocol name (smtp, imap, pop3) for ports that speak it, empty for implicit
# TLS. The checkers read configs, not what they point at: a certificate path holding garbage passes
# them all and only fails here. When every probe passes, the backup of the replaced files is dropped.
set -u
attempts=15  # one second apart: a restarted Dovecot or Postfix takes a moment to listen
stage='' probes='' sockets='' restart_units='' markers=''
nl='
'
while getopts S:p:k:R:M: opt; do
  case $opt in
    S) stage=$OPTARG ;;
    p) probes="$probes$OPTARG$nl" ;;
    k) sockets="$sockets$OPTARG$nl" ;;
    R) restart_units="$restart_units $OPTARG" ;;
    M) markers="$markers $OPTARG" ;;
    *) exit 2 ;;
  esac
done

# the address the port listens on (a wildcard means loopback will do), then a TLS handshake
# (after STARTTLS when $2 names its protocol)
probe() {
  i=0
  while [ "$i" -lt "$attempts" ]; do
    a=$(ss -Hltn "sport = :$1" | awk '{print $4}' | head -n1)
    case $a in ""|0.0.0.0:*|\*:*|"[::]:"*) a=127.0.0.1:$1 ;; esac
    if [ -n "$2" ]; then
      timeout 10 openssl s_client -connect "$a" -starttls "$2" -brief </dev/null >/dev/null 2>&1 && return 0
    else
      timeout 10 openssl s_client -connect "$a" -brief </dev/null >/dev/null 2>&1 && return 0
    fi
    i=$((i + 1))
    sleep 1
  done
  return 1
}
socket() {
  i=0
  while [ "$i" -lt $((attempts * 10)) ]; do
    [ -S "$1" ] && return 0
    i=$((i + 1))
    sleep 0.1
  done
  return 1
}

pids=''
default_ifs=$IFS
IFS=$nl
for p in $probes; do
  port=${p%%:*} rest=${p#*:}
  name=${rest%%:*} starttls=${rest#"$name"}
  starttls=${starttls#:}
  probe "$port" "$starttls" &
  pids="$pids$!:TLS-handshake:$name/$port$nl"
done
for s in $sockets; do
  socket "$s" &
  pids="$pids$!:auth-socket:$s$nl"
done
failed=''
for p in $pids; do
  wait "${p%%:*}" || failed="$failed ${p#*:}"
done
IFS=$default_ifs
if [ -z "$failed" ]; then
  rm -rf "$stage/backup"
  exit 0
fi
rollback "smoke check failed (on:$failed)" "$stage" "$restart_units" "$markers"
exit 1
