"""pyinfra's config file for runs from this directory (the CLI loads it before the inventory).

`pyinfra INVENTORY deploys/deploy_mailserver.py` then checks every host's mail-server data before it
connects: a host whose data the model refuses is never contacted (pyinfra_mailserver.preflight).
"""

from pyinfra import state

from pyinfra_mailserver.preflight import refuse_invalid_data_before_connect

refuse_invalid_data_before_connect(state)
