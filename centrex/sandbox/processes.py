"""centrex's own services as child processes: for `centrex up`, the tests and the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from centrex.config import Settings, settings_env

#: uvicorn logs "Application startup complete" before it binds its socket when it runs the app
#: itself (one worker), and after its parent bound it with several workers: ready is both
#: (a client connecting between the two was refused: seen in the suite on a loaded machine).
API_READY = ("Application startup complete", "Uvicorn running on")
DAEMON_READY = "Stasis app 'centrex' registered"
CDR_READY = "CDRs: shipping"
GUARD_READY = "guard: watching"


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class ServiceProcess:
    """``centrex api`` or ``centrex control``, configured by ``settings``, logging to a file."""

    def __init__(self, command: str, settings: Settings, log_dir: Path) -> None:
        self.name = command
        self.settings = settings
        self.log_path = log_dir / f"{command}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **settings_env(self.settings)}
        env.pop("DATABASE_URL", None)  # CENTREX_DATABASE_URL from settings wins, unambiguously
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "centrex", self.name],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start_and_wait(self, marker: str | tuple[str, ...], timeout: float = 30) -> None:
        """Start, and wait until the log says ``marker`` (each of them) once more than before."""
        markers = (marker,) if isinstance(marker, str) else marker
        seen = [self.log_text().count(m) for m in markers]

        def ready() -> bool:
            text = self.log_text()
            return all(text.count(m) > n for m, n in zip(markers, seen, strict=True))

        self.start()
        try:
            wait_until(lambda: ready() or not self.running, timeout, self.name)
            if not self.running:
                raise TimeoutError(f"{self.name} exited")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.log_text()[-3000:]}") from None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, *, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """``kill -9``: no cleanup, no goodbye."""
        self.stop(kill=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
