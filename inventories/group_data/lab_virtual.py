"""Lab hosts of the virtual variant (reference 002), e.g. mx2.lab.test: the example_virtual host adapted
to the lab. $mydomain is lab.test; the virtual domains are subdomains so they never collide with a
saslauthd host's local lab.test. Secrets come from the lab's secrets dir (`mailserver_secrets_dir`).
"""

from pyinfra_mailserver.lab.state import load as _lab_state

mailserver = {
    "identity": {
        "mydestination": ["$myhostname", "localhost.$mydomain", "localhost"],
        "inet_protocols": "ipv4",
        # loopback only: the controller (10.213.0.1) must AUTH to relay
        "mynetworks": ["127.0.0.0/8"],
        "message_size_limit": 10485760,
    },
    # the lab has no DNS: a sender domain cannot be looked up, so the check would defer all mail
    "smtpd": {"reject_unknown_sender_domain": False},
    # the controller (the lab bridge's address) runs the audit, whose probes try refused logins
    "fail2ban": {"ignore_ip": [f"{_lab_state().bridge_ip}/32"]},
    "relay": {
        # no internet in the lab: the sink domain is routed to the controller's test sink
        "transport": {"sink.lab.test": "smtp:[10.213.0.1]:2525"},
    },
    "aliases": {"postmaster": ["root"], "abuse": ["root"], "root": ["postmaster@virtual.lab.test"]},
    "virtual": {
        "domains": ["virtual.lab.test", "hosted.lab.test"],
        "alias_domains": ["alias.lab.test"],
        "mailboxes": [
            {
                "address": "alice@virtual.lab.test",
                "password": {"secret": "alice@virtual.lab.test"},
                "quota": "100M",
            },
            {
                "address": "bob@virtual.lab.test",
                "password": {"secret": "bob@virtual.lab.test"},
                "quota": "1M",
            },
            {"address": "carol@hosted.lab.test", "password": {"secret": "carol@hosted.lab.test"}},
            # the audit's own login: a generated token, cheap to verify (see `probe` in the model)
            {
                "address": "probe@virtual.lab.test",
                "password": {"secret": "probe@virtual.lab.test"},
                "probe": True,
            },
        ],
        "aliases": {
            "postmaster@virtual.lab.test": ["alice@virtual.lab.test"],
            "postmaster@hosted.lab.test": ["alice@virtual.lab.test"],
            # RFC 2142: complaints about mail from a domain go to its abuse@
            "abuse@virtual.lab.test": ["alice@virtual.lab.test"],
            "abuse@hosted.lab.test": ["alice@virtual.lab.test"],
            "team@virtual.lab.test": [
                "alice@virtual.lab.test",
                "bob@virtual.lab.test",
                "carol@hosted.lab.test",
            ],
            "@alias.lab.test": ["carol@hosted.lab.test"],
        },
        "vmail": {"uid": 5000, "gid": 5000, "base_dir": "/var/mail/vmail"},
    },
    "sasl": {"backend": "dovecot"},
    "tls": {"mode": "generate"},
    "services": {
        "imap": {"enabled": True},
        "imaps": {"enabled": True},
        "pop3": {"enabled": True},
        "pop3s": {"enabled": True},
        "dovecot_listen": ["*"],
    },
    "header_checks": [
        {"pattern": "/^Subject:.*forbidden-word/", "action": "REJECT message refused by policy"}
    ],
}
