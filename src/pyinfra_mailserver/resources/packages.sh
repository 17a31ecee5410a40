#!/bin/sh
# Install the missing packages of the mail stack in one transaction:
#
#   packages.sh -F debian|rhel [-P POLICY_RC_D] [-d 'PACKAGE QUESTION TYPE VALUE']... [PACKAGE]...
#
# Debian: the -d debconf answers are given first; while apt runs, a policy-rc.d of ours (exit 101, "not
# now") keeps maintainer scripts from starting daemons with the stock config (they start once, with the
# deploy's config, when the deploy activates them); it is only ours when there was none, and it goes when
# this script ends, even on a signal. One left behind by a host that went down is recognised by its
# content and removed (also when nothing is to be installed). apt's own timeouts do not cover every
# stall of an apt proxy, so `apt-get update` is bounded, and the whole install retried once.
set -u
family=debian policy='' preseed=''
nl='
'
ours='#!/bin/sh
# pyinfra-mailserver: no daemon starts with a stock config
exit 101'
while getopts F:P:d: opt; do
  case $opt in
    F) family=$OPTARG ;;
    P) policy=$OPTARG ;;
    d) preseed="$preseed$OPTARG$nl" ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))

if [ "$family" != debian ]; then
  [ $# -eq 0 ] || dnf install -y -q "$@"
  exit
fi

if [ -n "$policy" ]; then
  if [ $# -eq 0 ]; then
    [ ! -e "$policy" ] || [ "$(cat "$policy")" != "$ours" ] || rm -f "$policy"
    exit 0
  fi
  if [ ! -e "$policy" ] || [ "$(cat "$policy")" = "$ours" ]; then
    printf '%s\n' "$ours" >"$policy" && chmod 755 "$policy" || exit 1
    trap 'rm -f "$policy"' EXIT
    trap 'exit 1' HUP INT TERM
  fi
fi
[ $# -gt 0 ] || exit 0
if [ -n "$preseed" ]; then
  printf '%s' "$preseed" | debconf-set-selections || exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# finish what an interrupted or failed dpkg run left half-configured (a dist-upgrade whose maintainer
# script could not restart a daemon), with daemon starts still held off
dpkg --configure -a || true
opts='-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 -o Acquire::http::Timeout=60'
install() {
  # shellcheck disable=SC2086  # $opts is a list of apt options
  timeout 300 apt-get update -q $opts \
    && apt-get install -y -q --no-install-recommends $opts \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}
install "$@" || { sleep 2; install "$@"; }
