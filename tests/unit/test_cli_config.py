"""A bad setting stops the command with a message naming it, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("CENTREX_SIP_PORT", "abc", "valid integer"),
        ("CENTREX_MAX_CALL_DURATION_S", "-5", "greater than or equal to 1"),
    ],
)
@pytest.mark.parametrize("command", ["api", "control"])
def test_invalid_setting_is_named_and_exits_2(tmp_path, command, variable, value, problem):
    env = {**os.environ, variable: value, "CENTREX_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "centrex", command],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"{variable}: " in result.stderr and problem in result.stderr, result.stderr
    assert repr(value) in result.stderr
    assert "Traceback" not in result.stderr and "╭" not in result.stderr
