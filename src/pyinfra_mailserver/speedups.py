"""Cheaper drop-ins for two pyinfra 3.10 hot spots that cost the controller CPU per operation and host.

1. Operation ordering. In CLI mode pyinfra orders operations by the line numbers of the call stack
(from the deploy file down to the operation call). pyinfra 3.10 gets them with `inspect.stack()` plus
`getframeinfo()` per frame, which for every frame looks for its module and reads source context. That
was 40 % of the controller's CPU in a no-change run over 10 hosts (bench/, P3: 35 operations × 10
hosts, each walking a stack of ~20 frames). The line numbers only need each frame's file name and
current line, which the frame objects hold already; `install()` swaps in a walk over them that returns
the same list.

2. Global arguments. `pop_global_arguments` (every operation, every fact) calls `all_global_arguments()`,
which evaluates `typing.get_type_hints(AllArguments)` each time; the hints never change while the
process runs, so they are computed once.
"""

from __future__ import annotations

import functools
import sys
from types import FrameType
from typing import Any

import pyinfra
import pyinfra.api.operation
from pyinfra.api import arguments as pyinfra_arguments
from pyinfra.api import facts as pyinfra_facts
from pyinfra.api import util as pyinfra_util

# `pyinfra.api` re-exports the `operation` decorator under the submodule's name: reach the module itself
_OPERATION_MODULE = sys.modules["pyinfra.api.operation"]

_ORIGINAL = pyinfra_util.get_operation_order_from_stack
_ORIGINAL_ARGUMENTS = pyinfra_arguments.all_global_arguments


def operation_order_from_stack(state: Any, _frame: FrameType | None = None) -> list[int]:
    """Same result as `pyinfra.api.util.get_operation_order_from_stack`, from the frames themselves.

    `getframeinfo(frame)` reports `frame.f_code.co_filename` and `frame.f_lineno` for code read from
    files (what a deploy is), so these are used directly, outermost frame first.
    """
    frames: list[tuple[str, int]] = []
    frame = _frame or sys._getframe(1)
    while frame is not None:
        frames.append((frame.f_code.co_filename, frame.f_lineno))
        frame = frame.f_back  # type: ignore[assignment]
    frames.reverse()
    start = 0
    if state.current_deploy_filename:
        # like pyinfra: from the first (outermost) frame of the deploy file; if it is not on the stack,
        # pyinfra's loop ends on its own frame, which is skipped, so no stack line is used
        start = next(
            (i for i, (name, _) in enumerate(frames) if name == state.current_deploy_filename), len(frames)
        )
    line_numbers = [state.current_op_file_number] if pyinfra.is_cli else []
    install_dir = pyinfra_util.PYINFRA_INSTALL_DIR
    line_numbers += [line for name, line in frames[start:] if not name.startswith(install_dir)]
    return line_numbers


@functools.cache
def _global_argument_types() -> tuple[tuple[str, type], ...]:
    return tuple(_ORIGINAL_ARGUMENTS())


def all_global_arguments() -> list[tuple[str, type]]:
    """pyinfra's `all_global_arguments()`, with the type hints evaluated once per process."""
    return list(_global_argument_types())


def install() -> None:
    """Use the cheaper versions for everything pyinfra does from now on (idempotent)."""
    pyinfra_arguments.all_global_arguments = all_global_arguments  # type: ignore[assignment]
    pyinfra_facts.all_global_arguments = all_global_arguments  # type: ignore[attr-defined]
    _OPERATION_MODULE.get_operation_order_from_stack = operation_order_from_stack  # type: ignore[attr-defined]


def original() -> Any:
    """pyinfra's own implementation (for the equivalence test)."""
    return _ORIGINAL
