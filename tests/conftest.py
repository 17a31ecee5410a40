"""Shared pytest setup: the lab plugin (fixtures `lab`, `lab_host`, `fresh_lab_host`; see docs/lab.md)."""

pytest_plugins = ["pyinfra_mailserver.lab.pytest_plugin"]
