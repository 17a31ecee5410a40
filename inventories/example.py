"""Example inventory: two production-shaped mail hosts, one per SASL variant.

- mx1.example.org (group example_saslauthd): reference 001 — system users, SMTP AUTH through saslauthd
  (PAM), local delivery to Maildir through procmail, /etc/aliases lists, a relayhost with SASL credentials,
  a transport route, header_checks, Dovecot IMAP/POP3 for the system users.
- mx2.example.org (group example_virtual): reference 002 — virtual mailbox domains, Dovecot SASL and LMTP,
  a Dovecot passwd-file with ARGON2ID/SHA512-CRYPT hashes, quotas, virtual aliases.

The mail-server data of each host is in group_data/<group>.py (`mailserver = {...}`). Passwords are
`{"secret": NAME}` references resolved from the secrets directory (default: ../secrets, git-ignored):
`mailserver secrets generate inventories/example.py` creates random ones for a test run.

    mailserver render inventories/example.py --out out/example
"""

example_saslauthd = ["mx1.example.org"]
example_virtual = ["mx2.example.org"]
