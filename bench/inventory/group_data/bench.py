"""Benchmark data: inventories/group_data/lab_virtual.py (the virtual example adapted to the lab), with
two changes that only the benchmark needs.

- The sink route points at this lab's own bridge address instead of 10.213.0.1 (the default lab's), so
  no route of a bench host names another engineer's lab.
- `discard.bench.test` is a relay domain routed to Postfix's `discard:` transport: P5 sends its
  smtp-source traffic there, and the stock Debian host gets the very same two settings, so both sides
  accept, queue and drop each message through identical delivery work and only the rendered
  config differs.
"""

import copy as _copy
import runpy as _runpy
from pathlib import Path as _Path

from pyinfra_mailserver.lab.state import load as _load

__all__ = ["mailserver"]  # only the data: helpers below must not leak into host data

_LAB_VIRTUAL = _Path(__file__).resolve().parents[3] / "inventories" / "group_data" / "lab_virtual.py"
_bridge_ip = _load().bridge_ip

mailserver = _copy.deepcopy(_runpy.run_path(str(_LAB_VIRTUAL))["mailserver"])
mailserver["relay"]["transport"] = {
    "sink.lab.test": f"smtp:[{_bridge_ip}]:2525",
    "discard.bench.test": "discard:",
}
mailserver["postfix_extra"] = {"relay_domains": "discard.bench.test"}
