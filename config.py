"""pyinfra's config file for runs from this directory (the CLI loads it before the inventory).

`pyinfra INVENTORY deploys/deploy_mailserver.py` then checks every host's mail-server data before it
reads the inventory and connects: when the model refuses a host's data, no host is contacted and
every problem is listed (pyinfra_mailserver.preflight).
"""

from pyinfra_mailserver.preflight import refuse_invalid_data

refuse_invalid_data()
