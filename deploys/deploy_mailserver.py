"""The main job: `pyinfra inventories/<name>.py deploys/deploy_mailserver.py` provisions each host."""

from pyinfra_mailserver.deploys import deploy_mailserver

deploy_mailserver()
