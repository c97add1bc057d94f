"""Downloading and unpacking data set archives: resumable, checksummed, safe.

``download`` streams a URL into ``<dest>.part`` (resuming it with an HTTP Range request when a
previous run was cut), verifies the size and SHA-256 when they are pinned and renames the file
into place only when it is complete. ``extract`` copies the archive members that match a glob
into one flat folder, refusing absolute paths and ``..``. Errors are ``DownloadError`` with a
message that names the file or URL and says what to do.
"""

from __future__ import annotations

import fnmatch
import http.client
import lzma
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from tqdm import tqdm

from pipeline.core.files import sha256_file

CHUNK = 1 << 20
ALTERNATIVES = (
    "Without network, point params.yaml at a copy you already have (data.local.<SET>: /path/to/folder) "
    "or at a server holding the same archive names (data.mirror: <base URL>)."
)


class DownloadError(RuntimeError):
    """A download or archive that cannot be used; the message names the file or URL."""


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse | urllib.error.HTTPError:
    """GET ``url`` from byte ``offset``; a 416 answer is returned (the caller decides), not raised."""
    headers = {"User-Agent": "jpeg-restoration-fetch/1.0"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416:
            return e
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}. {ALTERNATIVES}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        # DNS failure, connection refused, timeout: fail at once rather than retrying for minutes.
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"cannot download {url}: {reason}. {ALTERNATIVES}") from None


def _range_total(content_range: str | None) -> int | None:
    """The total length in ``Content-Range: bytes a-b/TOTAL`` (None when absent or ``*``)."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _range_start(content_range: str | None) -> int | None:
    try:
        return int(content_range.split()[1].split("-")[0]) if content_range else None
    except (IndexError, ValueError):
        return None


def _stream(resp: IO[bytes], part: Path, offset: int, total: int | None, url: str, progress: bool) -> None:
    """Append the response body to ``part`` (which holds ``offset`` bytes already)."""
    received = offset
    with (
        open(part, "ab" if offset else "wb") as f,
        tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name,
            disable=not progress,
        ) as bar,
    ):
        while True:
            try:
                chunk = resp.read(CHUNK)
            except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                raise DownloadError(_cut_message(url, part, received, total, str(e))) from None
            if not chunk:
                break
            f.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    if total is not None and received < total:
        raise DownloadError(_cut_message(url, part, received, total, "connection closed early"))


def _cut_message(url: str, part: Path, received: int, total: int | None, reason: str) -> str:
    of = f" of {total}" if total is not None else ""
    return (
        f"{url}: transfer cut after {received}{of} bytes ({reason}); "
        f"the partial file {part} is kept and a rerun resumes from it"
    )


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    timeout: float = 30.0,
    progress: bool = True,
) -> str:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it, return its SHA-256.

    A ``dest`` that exists and matches ``sha256`` (or any ``dest`` when no digest is pinned) is
    returned without touching the network. On a checksum or size mismatch the file is deleted
    and DownloadError names it with the expected and actual values.
    """
    dest = Path(dest)
    if dest.exists():
        digest = sha256_file(dest)
        if sha256 is None or digest == sha256.lower():
            return digest
        dest.unlink()  # a stale or damaged cached copy: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    # Two tries at most: the second only when the server could not resume the partial file.
    for _ in range(2):
        offset = part.stat().st_size if part.exists() else 0
        resp = _open(url, offset, timeout)
        with resp:
            status = resp.getcode()
            content_range = resp.headers.get("Content-Range")
            if status == 416:
                if _range_total(content_range) == offset:
                    break  # the partial file was already complete
                part.unlink(missing_ok=True)  # longer than the server's file: start over
                continue
            if offset and status == 200:
                offset = 0  # the server ignored the Range request and sends the whole file: start over
            elif offset and _range_start(content_range) != offset:
                part.unlink(missing_ok=True)  # not the range asked for: ask again for the whole file
                continue
            length = resp.headers.get("Content-Length")
            total = _range_total(content_range) if status == 206 else None
            if total is None and length and length.isdigit():
                total = offset + int(length)
            _stream(resp, part, offset, total, url, progress)
            break
    else:
        raise DownloadError(f"{url}: the server did not send the file (after restarting from zero)")
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        part.unlink()
        raise DownloadError(f"{dest.name}: size mismatch: expected {size} bytes, got {actual_size}; file deleted")
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink()
        raise DownloadError(
            f"{dest.name}: checksum mismatch: expected sha256 {sha256}, got {digest}; file deleted "
            f"(a changed upstream file or a wrong mirror)"
        )
    part.replace(dest)
    return digest


def _check_member(archive: Path, name: str) -> None:
    """Refuse a member that would land outside the output folder if extracted as named."""
    parts = name.replace("\\", "/").split("/")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive or name.startswith("\\") or ".." in parts:
        raise DownloadError(f"{archive}: unsafe member path {name!r} (absolute or '..'); refusing to extract")


def _matches(name: str, pattern: str) -> bool:
    """Glob match segment by segment, so that ``*`` never crosses a ``/``."""
    names = [p for p in name.split("/") if p not in ("", ".")]
    pats = [p for p in pattern.split("/") if p not in ("", ".")]
    return len(names) == len(pats) and all(fnmatch.fnmatchcase(n, p) for n, p in zip(names, pats))


def _members(archive: Path) -> Iterator[tuple[str, bool, IO[bytes] | None]]:
    """(name, is regular file, opener) for each member of a zip or tar (any compression)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                yield info.filename, not info.is_dir(), (lambda i=info: zf.open(i))
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            for info in tf:
                # Links and devices are never extracted: only plain files carry image data.
                yield info.name, info.isfile(), (lambda i=info: tf.extractfile(i))
    else:
        raise DownloadError(f"{archive}: not a zip or tar archive (corrupt or truncated?); delete it and rerun")


def extract(archive: Path, members: str, out_dir: Path) -> list[Path]:
    """Extract the regular files matching the glob ``members`` into ``out_dir``, by base name.

    The format (zip, tar, tar.gz/bz2/xz) is read from the content. Raises DownloadError for an
    unsafe member path, two members with the same base name, or a corrupt/truncated archive.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extracted: list[Path] = []
    try:
        for name, regular, opener in _members(archive):
            _check_member(archive, name)
            if not regular or not _matches(name, members):
                continue
            target = out_dir / PurePosixPath(name).name
            if target in extracted:
                raise DownloadError(f"{archive}: two members named {target.name!r} match {members!r}")
            with opener() as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            extracted.append(target)
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise  # disk full, permissions: a problem of this machine, not of the archive
        raise DownloadError(f"{archive}: corrupt or truncated archive ({e}); delete it and rerun") from None
    return extracted
