"""Asterisk's CEL journal: the CSV file ``cel_custom`` appends to, and its rotated segments.

Asterisk opens the file for every record it appends, so renaming it is a safe rotation: the next
record starts a new file. A rotated segment is named ``<journal>.<epoch ms>``; segments are read
in that order, the live file last. A position is ``(segment, byte offset)``; the shipper stores
one in PostgreSQL (its checkpoint) with the CDRs it covers.

The journal is the CDRs' durable buffer: while PostgreSQL is down, or the daemon is, events stay
in it. Asterisk does not fsync it, so the reader does, each time it reads: what was appended is
on disk before it is shipped, and at most one read interval of events is exposed to a power cut.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from centrex.asterisk.file_tail import ROTATION_GRACE_S

LIVE = 10**15  # sorts after every rotated segment's epoch-ms suffix


@dataclass(frozen=True, order=True)
class Position:
    segment: int  # LIVE, or a rotated segment's epoch-ms suffix
    offset: int


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def segment_path(self, segment: int) -> Path:
        return self.path if segment == LIVE else self.path.with_name(f"{self.path.name}.{segment}")

    def rotated_segments(self) -> list[int]:
        prefix = self.path.name + "."
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.path.parent):
                suffix = entry.name.removeprefix(prefix)
                if entry.name.startswith(prefix) and suffix.isdigit():
                    found.append(int(suffix))
        return sorted(found)

    def name_of(self, segment: int) -> str:
        return self.segment_path(segment).name

    def segment_of(self, name: str) -> int:
        suffix = name.removeprefix(self.path.name + ".")
        return int(suffix) if name != self.path.name and suffix.isdigit() else LIVE

    def resume_from(self, name: str | None, offset: int) -> Position:
        """Where to start from a stored checkpoint (or from the oldest data, without one)."""
        rotated = self.rotated_segments()
        if name is None:
            return Position(rotated[0] if rotated else LIVE, 0)
        segment = self.segment_of(name)
        if segment == LIVE and rotated:
            # The live file was rotated after this checkpoint was stored (a crash between the
            # rename and the next checkpoint): the offset is in the oldest rotated segment, since
            # segments are only deleted once the checkpoint is past them.
            return Position(rotated[0], offset)
        if segment != LIVE and segment not in rotated:
            return Position(rotated[0] if rotated else LIVE, 0)  # replays; the key dedups
        if segment == LIVE and self.live_size() < offset:
            # A live file shorter than the checkpoint is not the one the checkpoint was taken in
            # (the node reinstalled, its journal replaced): resuming at the old offset would skip
            # its calls, then cut a line in two. Read it all; the key (node, linkedid) dedups.
            return Position(LIVE, 0)
        return Position(segment, offset)

    def read(
        self, at: Position, max_bytes: int = 4 << 20
    ) -> tuple[list[tuple[Position, str]], Position]:
        """Complete lines from ``at`` (each with its own position), and where reading stopped.
        Moves on to the next segment when a rotated one is exhausted."""
        lines: list[tuple[Position, str]] = []
        while True:
            path = self.segment_path(at.segment)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return lines, at
            try:
                os.fsync(fd)
                size = os.fstat(fd).st_size
                if size > at.offset:
                    os.lseek(fd, at.offset, os.SEEK_SET)
                    data = os.read(fd, min(size - at.offset, max_bytes))
                else:
                    data = b""
            finally:
                os.close(fd)
            end = data.rfind(b"\n") + 1  # a partial last line waits for its end
            offset = at.offset
            for raw in data[:end].splitlines(keepends=True):
                lines.append((Position(at.segment, offset), raw.decode("utf-8", "replace")))
                offset += len(raw)
            at = Position(at.segment, offset)
            if at.segment == LIVE or end or not self._rotated_long_ago(at.segment):
                return lines, at
            later = [s for s in self.rotated_segments() if s > at.segment]
            at = Position(later[0] if later else LIVE, 0)

    @staticmethod
    def _rotated_long_ago(segment: int) -> bool:
        return time.time() * 1000 - segment > ROTATION_GRACE_S * 1000

    def rotate(self) -> int:
        """Rename the live file to a new segment; returns the segment's suffix."""
        segment = int(time.time() * 1000)
        os.rename(self.path, self.segment_path(segment))
        return segment

    def bytes_after(self, at: Position) -> int:
        """Journal bytes from ``at`` to the end of the live file."""
        total = 0
        for segment in [*self.rotated_segments(), LIVE]:
            if segment < at.segment:
                continue
            try:
                size = self.segment_path(segment).stat().st_size
            except FileNotFoundError:
                continue
            total += size - (at.offset if segment == at.segment else 0)
        return max(total, 0)

    def live_size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def drop_segments_before(self, segment: int) -> None:
        """Rotated segments wholly before the checkpoint are shipped: remove them."""
        for old in self.rotated_segments():
            if old < segment:
                with contextlib.suppress(FileNotFoundError):
                    self.segment_path(old).unlink()
