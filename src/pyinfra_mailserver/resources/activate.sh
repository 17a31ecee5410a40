#!/bin/sh
# Bring one service to its new config, or back to the old one:
#
#   activate.sh -S STAGE -n SERVICE -u UNIT -a reload|restart|start|none [-e] [-D] [-o OLD_UNIT]...
#               [-R UNIT]... [-M MARKER]...
#
# reload: `systemctl reload`, or a restart when the install left STAGE/restart-SERVICE (a change a reload
# cannot apply); restart/start: `systemctl restart` (after stopping each -o OLD_UNIT, a unit of the
# release before that still runs the same daemon). -D re-reads unit files first (a drop-in changed);
# -e enables the unit at boot. When the action fails, the files the run replaced are put back, the
# -M markers removed and the -R units restarted (rollback, from rollback.sh), and it fails saying so.
# When it succeeds, SERVICE no longer waits for a reload (STAGE/pending-SERVICE goes).
set -u
nl='
'
stage='' service='' unit='' action=none enable=no daemon_reload=no old='' restart_units='' markers=''
while getopts S:n:u:a:eDo:R:M: opt; do
  case $opt in
    S) stage=$OPTARG ;;
    n) service=$OPTARG ;;
    u) unit=$OPTARG ;;
    a) action=$OPTARG ;;
    e) enable=yes ;;
    D) daemon_reload=yes ;;
    o) old="$old$OPTARG$nl" ;;
    R) restart_units="$restart_units $OPTARG" ;;
    M) markers="$markers $OPTARG" ;;
    *) exit 2 ;;
  esac
done

if [ "$enable" = yes ]; then
  systemctl enable "$unit" || exit 1
fi
[ "$action" != none ] || exit 0
[ "$daemon_reload" = no ] || systemctl daemon-reload || exit 1

old_ifs=$IFS; IFS=$nl
for u in $old; do
  systemctl stop "$u"
  systemctl reset-failed "$u" 2>/dev/null
done
IFS=$old_ifs

case $action in
  reload)
    if [ -e "$stage/restart-$service" ]; then
      rm -f "$stage/restart-$service"
      what="restarting $unit"
      systemctl restart "$unit"
    else
      what="reloading $unit"
      systemctl reload "$unit"
    fi ;;
  *)
    what="starting $unit"
    [ "$action" = start ] || what="restarting $unit"
    rm -f "$stage/restart-$service"
    systemctl restart "$unit" ;;
esac || rollback "$what failed" "$stage" "$restart_units" "$markers" || exit 1
rm -f "$stage/pending-$service"
