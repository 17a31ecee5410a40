"""Lab hosts of the saslauthd variant (reference 001), e.g. mx1.lab.test: the example_saslauthd host
adapted to the lab. Host names are FQDNs, so myhostname defaults to the inventory name; $mydomain is
lab.test. Secrets come from the lab's secrets dir (host data `mailserver_secrets_dir`), filled by
`mailserver secrets generate inventories/lab.py`.
"""

from pyinfra_mailserver.lab.state import load as _lab_state

mailserver = {
    "identity": {
        "mydestination": ["$myhostname", "localhost.$mydomain", "localhost", "$mydomain"],
        "inet_interfaces": ["all"],
        # the lab network has no IPv6
        "inet_protocols": "ipv4",
        # loopback only: the controller (10.213.0.1) and other lab hosts must AUTH to relay
        "mynetworks": ["127.0.0.0/8"],
        "message_size_limit": 10485760,
    },
    # the lab has no DNS: a sender domain cannot be looked up, so the check would defer all mail
    "smtpd": {"reject_unknown_sender_domain": False},
    # the controller (the lab bridge's address) runs the audit, whose probes try refused logins
    "fail2ban": {"ignore_ip": [f"{_lab_state().bridge_ip}/32"]},
    "relay": {
        # everything non-local goes to the test sink on the controller, which logs what it receives;
        # the sink speaks no TLS, so the (lab-only) relay password may cross the lab bridge in clear
        "relayhost": "[10.213.0.1]:2525",
        "credentials": {"username": "lab-relay", "password": {"secret": "lab-relay"}},
        "require_tls": False,
        # a transport route: this domain goes to the sink explicitly, bypassing the relayhost logic
        "transport": {"sink.lab.test": "smtp:[10.213.0.1]:2525"},
    },
    "local": {
        "mailbox": "maildir",
        "mailbox_command": "procmail",
        "users": [
            {"name": "bob", "comment": "Bob Leponge", "password": {"secret": "bob"}},
            {"name": "alice", "comment": "Alice", "password": {"secret": "alice"}},
        ],
        "existing_accounts": ["root"],
    },
    "aliases": {
        "postmaster": ["root"],
        "abuse": ["root"],
        "root": ["bob"],
        "bob.leponge": ["bob"],
        "admins": ["bob", "alice"],
    },
    "sasl": {
        "backend": "saslauthd",
        "mech_list": ["plain", "login"],
        "saslauthd": {"mechanism": "pam"},
    },
    "tls": {"mode": "generate", "min_protocol": "TLSv1.2"},
    "services": {
        "chroot": True,
        "smtp": {"auth": False},
        "submission": {"enabled": True},
        "smtps": {"enabled": True},
        "imap": {"enabled": True},
        "imaps": {"enabled": True},
        "pop3": {"enabled": True},
        "pop3s": {"enabled": True},
        "dovecot_listen": ["*"],
        "system_passdb": "pam",
    },
    "header_checks": [
        {"pattern": "/^Subject:/", "action": "WARN"},
        {"pattern": "/^From:/", "action": "WARN"},
        {"pattern": "/^To:/", "action": "WARN"},
    ],
}
