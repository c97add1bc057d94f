"""Atomic file and folder writes, the inter-process file lock and file digests, in one place.

A reader (a DVC stage, the app, a concurrent experiment) never sees a half-written output: every
file is written to a temporary name beside its target and renamed into place; a folder is built
in a hidden temporary sibling and moved in only when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes private files; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def replacing_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``path``; when the block ends without error it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the outputs are not
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def lock(path: str | Path) -> FileLock:
    """An exclusive inter-process lock held while in a ``with`` block (the file itself stays)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 digest of a file, read in chunks of 1 MiB."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
