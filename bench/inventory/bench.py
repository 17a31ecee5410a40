"""pyinfra inventory of the benchmark lab (state: $MAILSERVER_LAB_DIR, set by bench/run).

Every host of the bench lab is in group `bench`, whose data (group_data/bench.py) is the lab's
virtual-variant example plus a discard route for P5, so one inventory serves every figure.
Hosts whose role is not a mail server (the P1 floor, the P5 stock Postfix) are excluded with --limit.
"""

from pyinfra_mailserver.lab.state import inventory_hosts as _inventory_hosts
from pyinfra_mailserver.lab.state import state_dir_from_env as _state_dir

_groups = _inventory_hosts()
if not _groups["lab"]:
    raise SystemExit(f"no bench lab hosts (lab state dir: {_state_dir()})")

bench = _groups["lab"]
