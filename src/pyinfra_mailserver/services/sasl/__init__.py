"""saslauthd, the PAM-backed SMTP AUTH of system users: its defaults file, Postfix's smtpd.conf and (on
a native unit) the drop-in that names its PID file."""
