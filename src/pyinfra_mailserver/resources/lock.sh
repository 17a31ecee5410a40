#!/bin/sh
# One deploy at a time per host: `lock.sh PATH` prints LOCKED and holds an flock on PATH until its
# stdin closes (the deploy's connection ends, however it ends), or prints BUSY when another deploy holds
# it, or NOFLOCK when the host has no working flock. The shell opens PATH on fd 9, takes the lock on it
# and becomes `cat`, which inherits fd 9 and lives as long as the channel.
umask 077
dir=${1%/*}
[ -d "$dir" ] || mkdir -p "$dir" || exit 1
exec 9>>"$1" || exit 1
if flock -n 9; then
  echo LOCKED
  exec cat >/dev/null
elif [ $? -eq 1 ]; then
  echo BUSY
else
  echo NOFLOCK
fi
