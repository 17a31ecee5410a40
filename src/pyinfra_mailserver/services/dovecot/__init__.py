"""Dovecot: IMAP, POP3, LMTP delivery and the SASL socket Postfix asks; the config tree checked with
`doveconf -n` before it goes live."""
