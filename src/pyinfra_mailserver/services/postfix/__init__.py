"""Postfix: main.cf, master.cf, the lookup tables; checked with `postfix check` / `postconf` before
they go live."""
