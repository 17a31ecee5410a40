"""fail2ban: bans, with nftables, the addresses that keep failing SMTP AUTH or IMAP/POP3 logins."""
