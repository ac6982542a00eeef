"""The systemd units in deploy/systemd/ are valid units (systemd's own checker)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "deploy" / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_units_verify(tmp_path: Path):
    # Pointed at this checkout's virtualenv, where `centrex` exists, instead of /opt/centrex.
    venv = Path(sys.executable).parent.parent
    names = sorted(p.name for p in UNITS.iterdir() if p.suffix in (".service", ".target"))
    assert {"centrex-api.service", "centrex-control.service", "centrex-cdr.service"} <= set(names)
    for name in names:
        text = (UNITS / name).read_text().replace("/opt/centrex/.venv", str(venv))
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in names)],
        capture_output=True, text=True,
        env={"SYSTEMD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    problems = [ln for ln in result.stderr.splitlines() if "centrex" in ln]
    assert result.returncode == 0 and not problems, result.stderr
    for name in ("centrex-api.service", "centrex-control.service", "centrex-cdr.service",
                 "centrex-guard.service"):  # fmt: skip
        assert "Restart=always" in (UNITS / name).read_text(), name
