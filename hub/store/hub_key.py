"""The hub's own Ed25519 key: made once in the data directory, readable only by its owner.

The hub signs key registrations with it; verifiers pin its public half
(``spime-hub key show``). Hub replicas sharing one database must share this
file too, or bundles exported through them carry different hub keys.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hub.errors import FailedPrecondition, StorageError
from hub.localfiles import FileTooLarge, NotRegularFile, read_regular
from hub.provenance import generate_private_key

__all__ = ["HUB_KEY_NAME", "install_hub_key", "load_or_create_hub_key", "read_hub_key"]

HUB_KEY_NAME = "hub_ed25519.key"
_MAX_KEY_FILE_BYTES = 1024  # 64 hex digits and a newline


def load_or_create_hub_key(data_dir: Path) -> bytes:
    """The hub's raw 32-byte private key, made (mode 0600) on first use.

    Raises:
        StorageError: the file is unreadable, malformed, or readable by others.
    """
    path = Path(data_dir) / HUB_KEY_NAME
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        _create(path, generate_private_key())
    except FileExistsError:
        pass  # another process made it first: use theirs
    except OSError as exc:
        raise StorageError(f"cannot create the hub key {path}: {exc}") from exc
    try:
        return _read(path)
    except FileNotFoundError as exc:
        raise StorageError(f"the hub key {path} vanished while the hub started") from exc


def read_hub_key(data_dir: Path) -> bytes | None:
    """The hub's private key if the data directory has one (for backups), else None.

    Raises:
        StorageError: the file is unreadable, malformed, or readable by others.
    """
    try:
        return _read(Path(data_dir) / HUB_KEY_NAME)
    except FileNotFoundError:
        return None


def install_hub_key(data_dir: Path, key: bytes) -> None:
    """Put a restored hub key in place (mode 0600); a data directory that already holds this
    key is left as it is.

    Raises:
        FailedPrecondition: the data directory holds a different hub key (restoring over it
            would make every bundle the hub signed unverifiable with the pinned key).
        StorageError: the key cannot be written.
    """
    path = Path(data_dir) / HUB_KEY_NAME
    try:
        _create(path, key)
        return
    except FileExistsError:
        pass
    except OSError as exc:
        raise StorageError(f"cannot write the hub key {path}: {exc}") from exc
    if _read(path) != key:
        raise FailedPrecondition(f"{path} holds another hub key than the backup's: restore into a fresh data "
                                 "directory, or move that key away if it is not in use")


def _create(path: Path, key: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key.hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # fails with FileExistsError instead of replacing a key already in use
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> bytes:
    try:
        text = read_regular(path, _MAX_KEY_FILE_BYTES).decode("ascii").strip()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise
    except NotRegularFile:
        raise StorageError(f"the hub key {path} is not a regular file: move it away") from None
    except FileTooLarge:
        raise StorageError(f"the hub key {path} is over {_MAX_KEY_FILE_BYTES} bytes: not a hub key") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"cannot read the hub key {path}: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StorageError(f"the hub key {path} is readable by others: chmod 600 it")
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise StorageError(f"the hub key {path} is not hex") from exc
    if len(key) != 32:
        raise StorageError(f"the hub key {path} holds {len(key)} bytes, not 32")
    return key
