"""`mailserver audit`: outside-in protocol probes, inside checks over pyinfra, optional DNS checks."""
