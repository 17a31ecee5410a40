"""The host's own part of a mail server: packages, accounts, directories, local delivery (MDA rc files)."""
