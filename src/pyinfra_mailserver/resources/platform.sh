#!/bin/sh
# What the host runs, for the distro table: its os-release, then the versions of its mail programs
# (empty when not installed yet: then the release's own versions apply).
cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
printf 'DOVECOT_VERSION=%s\n' "$(dovecot --version 2>/dev/null)"
printf 'POSTFIX_VERSION=%s\n' "$(postconf -h mail_version 2>/dev/null)"
