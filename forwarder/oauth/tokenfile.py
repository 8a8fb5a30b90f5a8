"""The tokens of one account on disk: a small JSON file beside the state file, mode 0600.

Written atomically: a new file is created 0600 in the same directory (never group- or
world-readable, not even for a moment), written, fsynced, renamed over the old one, and the
directory is fsynced, so a crash leaves the old file or the new one, never half of either.
That matters because a provider that rotates refresh tokens (Microsoft does) may have
retired the old one the moment it issued the new one.

When ``forwarder login`` runs as root (sudo) but the service runs as another user (systemd's
``DynamicUser`` owns ``/var/lib/forwarder``), the file is handed to the owner of the directory,
or the service could not read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any

VERSION = 1


class TokenFileError(Exception):
    """The file exists but cannot be read or used; the text names the file, never a token."""


def signature(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns): changes when the file is replaced; None when there is none."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def load(path: Path) -> dict[str, Any] | None:
    """The saved tokens, or None when there is no file yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TokenFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise TokenFileError(f"{path} is not a token file forwarder wrote (bad JSON)") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise TokenFileError(f"{path} is not a token file this forwarder can read")
    return data


def save(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` atomically; the file is 0600 from its first byte."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    payload = json.dumps({**data, "version": VERSION}, indent=2, sort_keys=True).encode()
    temporary = directory / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            _hand_to_directory_owner(fd, directory)
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_directory(directory)


def _hand_to_directory_owner(fd: int, directory: Path) -> None:
    """As root, in a directory owned by someone else (the service's user): give them the file."""
    if os.geteuid() != 0:
        return
    st = directory.stat()
    if st.st_uid != 0 and stat.S_ISDIR(st.st_mode):
        os.fchown(fd, st.st_uid, st.st_gid)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
