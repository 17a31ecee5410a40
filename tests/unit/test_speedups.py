"""The cheaper operation-order walk returns exactly what pyinfra's own `inspect.stack()` version does."""

from __future__ import annotations

from types import SimpleNamespace

import pyinfra
import pytest

from pyinfra_mailserver import speedups


def _nested(depth: int, state: SimpleNamespace) -> tuple[list[int], list[int]]:
    if depth:
        return _nested(depth - 1, state)
    # both from the same line: each sees this frame's current line
    return speedups.original()(state), speedups.operation_order_from_stack(state)


@pytest.mark.parametrize("is_cli", [True, False])
@pytest.mark.parametrize("deploy_file", [__file__, "/nowhere/deploy.py", None])
@pytest.mark.parametrize("depth", [0, 3])
def test_same_order_as_pyinfra(
    monkeypatch: pytest.MonkeyPatch, is_cli: bool, deploy_file: str | None, depth: int
) -> None:
    monkeypatch.setattr(pyinfra, "is_cli", is_cli)
    state = SimpleNamespace(current_deploy_filename=deploy_file, current_op_file_number=7)
    theirs, ours = _nested(depth, state)
    assert ours == theirs
    if deploy_file == __file__:  # the walk starts at this file: this test's and _nested's lines
        assert len(ours) == (1 if is_cli else 0) + 1 + depth + 1


def test_installed_by_the_deploys_package() -> None:
    import sys

    import pyinfra_mailserver.deploys  # noqa: F401

    module = sys.modules["pyinfra.api.operation"]
    assert module.get_operation_order_from_stack is speedups.operation_order_from_stack


def test_global_arguments_same_as_pyinfra() -> None:
    from pyinfra.api import arguments

    speedups.install()
    assert arguments.all_global_arguments is speedups.all_global_arguments
    assert speedups.all_global_arguments() == list(arguments.get_type_hints(arguments.AllArguments).items())
