"""mx2.example.org: virtual mailbox hosting with Dovecot (reference 002).

Mailboxes are not system accounts: they belong to the vmail user (5000:5000) under /var/mail/vmail, are
authenticated by Dovecot from a passwd-file (SMTP AUTH goes through Dovecot SASL too) and delivered by
Dovecot LMTP, which enforces quotas.
"""

mailserver = {
    "identity": {
        # the virtual domains must NOT be in mydestination (reference 002 §8)
        "mydestination": ["$myhostname", "localhost.$mydomain", "localhost"],
        "mynetworks": ["127.0.0.0/8", "[::1]/128"],
        "message_size_limit": 26214400,
    },
    "relay": {
        # direct delivery via MX (no relayhost); mail to a partner goes over a fixed route
        "relayhost": None,
        "transport": {
            "partner.example.com": "smtp:[198.51.100.25]:25",
            ".internal.example.org": "error:5.1.2 internal only",
        },
    },
    "aliases": {"postmaster": ["root"], "abuse": ["root"], "root": ["postmaster@example.net"]},
    "virtual": {
        "domains": ["example.net", "example.com"],
        # forward-only domain: every address is an alias (virtual_alias_domains)
        "alias_domains": ["example.info"],
        "mailboxes": [
            # passwords: ARGON2ID (default of `mailserver passwd`) or SHA512-CRYPT, from the secrets dir
            # alice may also send as the team's shared address (a login sends only as its own addresses)
            {
                "address": "alice@example.net",
                "password": {"secret": "alice@example.net"},
                "quota": "2G",
                "send_as": ["team@example.net"],
            },
            {"address": "bob@example.net", "password": {"secret": "bob@example.net"}, "quota": "500M"},
            {"address": "bob@example.com", "password": {"secret": "bob@example.com"}},
            # the audit's own login (`mailserver audit`): a generated 32-character token, hashed cheaply
            {"address": "probe@example.net", "password": {"secret": "probe@example.net"}, "probe": True},
        ],
        "aliases": {
            "postmaster@example.net": ["alice@example.net"],
            "postmaster@example.com": ["alice@example.net"],
            "abuse@example.net": ["alice@example.net"],
            "abuse@example.com": ["alice@example.net"],
            "team@example.net": ["alice@example.net", "bob@example.net", "bob@example.com"],
            "@example.info": ["alice@example.net"],
        },
        "vmail": {"user": "vmail", "group": "vmail", "uid": 5000, "gid": 5000, "base_dir": "/var/mail/vmail"},
    },
    "sasl": {"backend": "dovecot", "mech_list": ["plain", "login"], "dovecot_socket": "private/auth"},
    "tls": {"mode": "generate", "min_protocol": "TLSv1.2"},
    "services": {
        "smtp": {"port": 25},
        "submission": {"port": 587},
        "smtps": {"port": 465},
        "imap": {"enabled": True},
        "imaps": {"enabled": True},
        "pop3": {"enabled": False},
        "pop3s": {"enabled": True},
    },
    "header_checks": [{"pattern": "/^Subject:.*viagra/", "action": "REJECT spam is not accepted here"}],
}
