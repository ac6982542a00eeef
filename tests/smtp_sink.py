"""A real SMTP server for the tests, as a process of its own (so a test can stop it and start
it again): aiosmtpd on loopback, each message it accepts written to DIR as N.eml.

    python tests/smtp_sink.py PORT DIR       prints "ready" once it listens

:class:`SmtpSink` runs it from the tests (tests/conftest.py: ``smtp_server``, ``smtp_inbox``).
"""

from __future__ import annotations

import email
import email.policy
import itertools
import os
import signal
import subprocess
import sys
import threading
from email.message import Message
from pathlib import Path


class SmtpSink:
    """The server process, and the messages it received so far (oldest first)."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port, self.directory = port, directory
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(self.port), str(self.directory)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().strip()
        assert ready == "ready", f"the SMTP server did not start on port {self.port}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def messages(self, policy: email.policy.Policy = email.policy.default) -> list[Message]:
        return [
            email.message_from_bytes(p.read_bytes(), policy=policy)
            for p in sorted(self.directory.glob("*.eml"))
        ]


class Inbox:
    """The received messages as a list (compat32 messages, as aiosmtpd's Message handler
    gives them): ``len(inbox)``, ``inbox[before:]``."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    def __len__(self) -> int:
        return len(list(self.sink.directory.glob("*.eml")))

    def __getitem__(self, index):
        return self.sink.messages(email.policy.compat32)[index]


class Keep:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.numbers = itertools.count(len(list(directory.glob("*.eml"))))

    async def handle_DATA(self, server, session, envelope) -> str:
        path = self.directory / f"{next(self.numbers):04d}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(envelope.original_content or envelope.content)
        os.replace(tmp, path)  # a reader never sees half a message
        return "250 OK"


def main() -> None:
    from aiosmtpd.controller import Controller

    port, directory = int(sys.argv[1]), Path(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    controller = Controller(Keep(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
