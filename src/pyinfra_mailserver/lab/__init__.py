"""The lab: throwaway real Debian hosts (systemd-nspawn in network namespaces) for demos and tests."""
