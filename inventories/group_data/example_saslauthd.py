"""mx1.example.org: a Postfix server for system users, SMTP AUTH through saslauthd (reference 001).

Every key is documented in `mailserver schema`; anything not set here takes the secure default.
myhostname is not set: it defaults to the inventory host name (mx1.example.org).
"""

mailserver = {
    "identity": {
        # $mydomain (example.org) is derived from myhostname; mail for it is delivered locally
        "mydestination": ["$myhostname", "localhost.$mydomain", "localhost", "$mydomain"],
        "inet_interfaces": ["all"],
        "inet_protocols": "all",
        # only these networks may relay without AUTH: loopback and the office LAN. Never 0.0.0.0/0.
        "mynetworks": ["127.0.0.0/8", "[::1]/128", "192.168.96.0/19"],
        "recipient_delimiter": "+",
        "mailbox_size_limit": 0,
        "message_size_limit": 52428800,
        "smtpd_banner": "$myhostname ESMTP",
    },
    # outbound mail goes through the provider's submission port (no MX lookup: brackets),
    # logging in with a password kept in the secrets directory (rendered to sasl_passwd, 0600)
    "relay": {
        "relayhost": "[smtp.provider.example.net]:587",
        "credentials": {"username": "mx1@example.org", "password": {"secret": "relay-example.org"}},
        # a neighbour's domain is sent straight to its server, bypassing the relayhost
        "transport": {"neighbour.example.com": "smtp:[172.16.96.100]:25"},
    },
    # local delivery: Maildir/ in each user's home, through procmail (filters in ~/.procmailrc)
    "local": {
        "mailbox": "maildir",
        "mailbox_command": "procmail",
        # system users log in with PAM (SMTP AUTH via saslauthd, IMAP via Dovecot);
        # their passwords are SHA512-CRYPT hashes, the only kind /etc/shadow and PAM understand
        "users": [
            {"name": "bob", "comment": "Bob Leponge", "password": {"secret": "bob"}},
            {"name": "alice", "comment": "Alice", "password": {"secret": "alice"}},
        ],
        "existing_accounts": ["root"],
    },
    # /etc/aliases: redirects and a list (reference 002 §5.1)
    "aliases": {
        "postmaster": ["root"],
        "abuse": ["root"],
        "root": ["bob"],
        "bob.leponge": ["bob"],
        "admins": ["bob", "alice"],
    },
    # SMTP AUTH: Cyrus SASL asks saslauthd, which checks PAM; its socket lives inside Postfix's chroot
    # (/var/spool/postfix/var/run/saslauthd) so the chrooted smtpd can reach it
    "sasl": {
        "backend": "saslauthd",
        "mech_list": ["plain", "login"],
        "saslauthd": {"mechanism": "pam", "threads": 5},
    },
    # TLS on everywhere; a certificate for mx1 signed by a CA the controller generates
    "tls": {
        "enabled": True,
        "mode": "generate",
        "extra_names": ["mail.example.org"],
        "min_protocol": "TLSv1.2",
        "auth_only": True,
    },
    # port 25 (no AUTH), submission 587 and smtps 465 (AUTH required); IMAP and POP3 with STARTTLS/TLS
    "services": {
        "chroot": True,
        "smtp": {"enabled": True, "port": 25, "auth": False},
        "submission": {"enabled": True, "port": 587},
        "smtps": {"enabled": True, "port": 465},
        "imap": {"enabled": True, "port": 143},
        "imaps": {"enabled": True, "port": 993},
        "pop3": {"enabled": True, "port": 110},
        "pop3s": {"enabled": True, "port": 995},
        "system_passdb": "pam",
    },
    # legal tracking (reference 002 §9): log sender, recipients and subject of every message
    "header_checks": [
        {"pattern": "/^Subject:/", "action": "WARN"},
        {"pattern": "/^From:/", "action": "WARN"},
        {"pattern": "/^To:/", "action": "WARN"},
    ],
}
