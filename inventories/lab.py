"""pyinfra inventory for the lab hosts made by `mailserver lab up` (state: $MAILSERVER_LAB_DIR or default).

    mailserver lab up --hosts 2
    pyinfra -y inventories/lab.py exec -- hostname
    MAILSERVER_LAB_DIR=/path/to/other/lab pyinfra -y inventories/lab.py ...

Groups: `lab` (all hosts), `lab_virtual` and `lab_saslauthd` (by each host's `--variant`). Host names
are FQDNs (mx1.lab.test); host data holds the SSH settings (lab key, host key checking off for these
throwaway hosts only), `lab_ip` and `mailserver_secrets_dir`. Group data is in group_data/.
"""

from pyinfra_mailserver.lab.state import inventory_hosts as _inventory_hosts
from pyinfra_mailserver.lab.state import state_dir_from_env as _state_dir

_groups = _inventory_hosts()
if not _groups["lab"]:
    # SystemExit, not an exception: pyinfra would bury the message under a traceback.
    raise SystemExit(f"no lab hosts: run `mailserver lab up` (lab state dir: {_state_dir()})")

lab = _groups["lab"]
lab_virtual = _groups["lab_virtual"]
lab_saslauthd = _groups["lab_saslauthd"]
