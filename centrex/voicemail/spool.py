"""The mailboxes' files, where app_voicemail keeps them (file storage in the instance's spool):
``<spool>/voicemail/centrex/<mailbox>/<folder>/msgNNNN.{txt,wav}``, the greetings beside.

Blocking file work: callers run these methods in a thread. The API must run on the host of
the Asterisk it serves (it reads and writes these files), as the sandbox does.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from centrex.config import Settings
from centrex.voicemail.rules import FOLDERS, MAILBOX_CONTEXT, MessageInfo, parse_message

_MSG_TXT = re.compile(r"^msg[0-9]{4}\.txt$")
#: The greetings app_voicemail plays: ``u`` (unavailable) and ``b`` (busy) calls.
GREETINGS = ("unavail.wav", "busy.wav")


@dataclass(frozen=True)
class StoredMessage:
    mailbox: str
    folder: str
    info: MessageInfo
    audio: Path  # the WAV

    @property
    def size(self) -> int:
        try:
            return self.audio.stat().st_size
        except OSError:
            return 0


def spool_of(settings: Settings) -> Path:
    from centrex.sandbox.asterisk import AsteriskSandbox

    sandbox = AsteriskSandbox(settings)
    return sandbox.host_path(sandbox.dirs.spool / "voicemail" / MAILBOX_CONTEXT)


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _box(self, mailbox: str) -> Path:
        if not mailbox or "/" in mailbox or mailbox.startswith("."):
            raise ValueError(f"bad mailbox {mailbox!r}")
        return self.root / mailbox

    def mailboxes(self) -> list[str]:
        with contextlib.suppress(FileNotFoundError):
            return sorted(p.name for p in self.root.iterdir() if p.is_dir())
        return []

    def messages(self, mailbox: str) -> list[StoredMessage]:
        """The mailbox's complete messages (a WAV and its metadata), oldest first."""
        out = []
        for folder in FOLDERS:
            directory = self._box(mailbox) / folder
            try:
                names = sorted(n for n in os.listdir(directory) if _MSG_TXT.match(n))
            except FileNotFoundError:
                continue
            for name in names:
                txt = directory / name
                audio = txt.with_suffix(".wav")
                try:
                    info = parse_message(txt.read_text(errors="replace"))
                except OSError:
                    continue  # deleted meanwhile
                if info is not None and audio.is_file():
                    out.append(StoredMessage(mailbox, folder, info, audio))
        out.sort(key=lambda m: (m.info.received_at, m.info.msg_id))
        return out

    def find(self, mailbox: str, msg_id: str) -> StoredMessage | None:
        return next((m for m in self.messages(mailbox) if m.info.msg_id == msg_id), None)

    def delete(self, message: StoredMessage) -> None:
        """Every file of the message (``msgNNNN.*``). app_voicemail numbers the next message
        after the highest one left, and renumbers a folder when a phone opens it."""
        stem = message.audio.stem
        for path in message.audio.parent.glob(f"{stem}.*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def write_greeting(self, mailbox: str, data: bytes) -> None:
        box = self._box(mailbox)
        owner = self._owner()
        for path in (self.root.parent, self.root, box):
            if not path.exists():
                path.mkdir(mode=0o750, parents=True, exist_ok=True)
                if owner:
                    os.chown(path, *owner)
        for name in GREETINGS:
            target = box / name
            tmp = box / f".{name}.tmp"
            tmp.write_bytes(data)
            tmp.chmod(0o640)
            if owner:
                os.chown(tmp, *owner)
            os.replace(tmp, target)  # never half a greeting played

    def remove_greeting(self, mailbox: str) -> None:
        for name in GREETINGS:
            with contextlib.suppress(FileNotFoundError):
                (self._box(mailbox) / name).unlink()

    def _owner(self) -> tuple[int, int] | None:
        """Asterisk's user, who owns the spool: it must be able to read what we write."""
        for path in (self.root, self.root.parent, self.root.parent.parent):
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                return (st.st_uid, st.st_gid) if os.geteuid() == 0 else None
        return None
