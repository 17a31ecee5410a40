"""The Vagrant VM (see Vagrantfile): the example's virtual-mailbox host, reached over SSH with sudo.

    vagrant up        # boots the VM and runs: pyinfra -y inventories/vagrant.py deploys/deploy_mailserver.py

The host is in group `example_virtual`, so it takes its mail-server data from
group_data/example_virtual.py, like mx2.example.org in inventories/example.py. The SSH key is the one
Vagrant made for this machine (override with VAGRANT_SSH_KEY, e.g. for the libvirt provider).
"""

import os as _os
from pathlib import Path as _Path

_root = _Path(__file__).resolve().parent.parent
_key = _os.environ.get(
    "VAGRANT_SSH_KEY", str(_root / ".vagrant" / "machines" / "default" / "virtualbox" / "private_key")
)

example_virtual = [
    (
        "mx2.example.org",
        {
            "ssh_hostname": _os.environ.get("VAGRANT_IP", "192.168.56.25"),
            "ssh_user": "vagrant",
            "ssh_key": _key,
            # a throwaway VM that gets a new host key on every `vagrant up`
            "ssh_strict_host_key_checking": "no",
            "ssh_known_hosts_file": "/dev/null",
            "_sudo": True,
        },
    )
]
