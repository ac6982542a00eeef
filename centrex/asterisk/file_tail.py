"""``tail -F`` of a file Asterisk appends to: the lines from now on, across rotations.

The daemon follows the CEL journal with it (the CDR shipper reads the same journal from its
checkpoint, and rotates it), the guard Asterisk's security log; both need only what happens
from now on, as soon as it happens. It keeps the file
open and, when the journal is renamed away (a rotation), drains the old file for a grace period
(a record Asterisk began before the rename lands there) while reading the new one from its
start.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

# A record Asterisk began just before a rotation (a rename) may land in the renamed file: read
# it for this long after the rename before leaving it.
ROTATION_GRACE_S = 2.0


@dataclass
class _OpenFile:
    fd: int
    inode: int
    pending: bytes = b""  # a partial last line, completed by the next read
    drain_until: float | None = None  # set once the file was renamed away

    def read_lines(self) -> list[str]:
        chunks = []
        while chunk := os.read(self.fd, 1 << 20):
            chunks.append(chunk)
        if not chunks:
            return []
        data = self.pending + b"".join(chunks)
        end = data.rfind(b"\n") + 1
        self.pending = data[end:]
        return [raw.decode("utf-8", "replace") for raw in data[:end].splitlines()]


@dataclass
class FileTail:
    path: Path
    _current: _OpenFile | None = None
    _draining: list[_OpenFile] = field(default_factory=list)

    def start_at_end(self) -> None:
        """Skip what is already there: whatever happened before is the sweep's business."""
        self._current = self._open()
        if self._current is not None:
            os.lseek(self._current.fd, 0, os.SEEK_END)

    def _open(self) -> _OpenFile | None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        return _OpenFile(fd, os.fstat(fd).st_ino)

    def read_lines(self) -> list[str]:
        lines: list[str] = []
        now = time.monotonic()
        for old in list(self._draining):
            lines += old.read_lines()
            if old.drain_until is not None and now > old.drain_until:
                os.close(old.fd)
                self._draining.remove(old)
        if self._current is not None:
            lines += self._current.read_lines()
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if self._current is None or inode != self._current.inode:
            if self._current is not None:  # renamed away: keep reading it for a while
                self._current.drain_until = now + ROTATION_GRACE_S
                self._draining.append(self._current)
            self._current = self._open() if inode is not None else None
            if self._current is not None:
                lines += self._current.read_lines()
        return lines

    def close(self) -> None:
        for f in [*self._draining, *([self._current] if self._current else [])]:
            with contextlib.suppress(OSError):
                os.close(f.fd)
        self._draining.clear()
        self._current = None
