"""pyinfra-mailserver: one typed model of a mail server, rendered, deployed, checked and audited."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent


def templates_dir() -> Path:
    """Where the jinja2 templates are: inside the wheel, or at the top of a source checkout.

    The templates live at the top of the repository (where a reader looks for them) and are copied into
    the package when a wheel is built, so an installed `mailserver` finds them without the checkout.
    """
    packaged = PACKAGE_DIR / "templates"
    if packaged.is_dir():
        return packaged
    checkout = PACKAGE_DIR.parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"templates not found in {packaged} nor {checkout}")
