"""DVC stage ``download``: one data set into a folder (``python -m stages.download SET --out DIR --downloads DIR``).

Sources, the first that applies: the user's folder ``data.local.<SET>``; the bundled sample
photos (``sample_train``/``sample_test``); the catalog URL, or ``data.mirror`` + the archive's
file name. Archives are cached in the ``--downloads`` folder (not a DVC output, so a rerun never
downloads twice). Every image is decoded once to validate it; in a local folder, files that are
not images by their extension (README.md, .DS_Store, Thumbs.db) are skipped with one warning.
The set is built in a hidden folder next to the output and moved into place only when complete:
a failure leaves no partial output.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from pipeline import params as params_mod
from pipeline.core import files, images
from pipeline.core.images import ImageError
from pipeline.data import datasets
from pipeline.data.datasets import DatasetSpec
from pipeline.data.fetch import DownloadError, download, extract
from pipeline.mlops import tracking
from pipeline.params import Params, ParamsError


def _entry(name: str, data: bytes, label: str) -> dict[str, Any]:
    """Validate image bytes by decoding them; their manifest entry (name, size, sha256)."""
    images.decode_image(data, label)  # raises ImageError naming the file
    return {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same filesystem: no second copy of a multi-GB set
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(src, dst)


def _from_local(spec: DatasetSpec, folder: Path, tmp: Path) -> list[dict[str, Any]]:
    """Copy a user's folder: the first of the catalog's ``local_subdirs`` that holds images (hidden
    files and files without an image extension are skipped; a file named like an image must decode)."""
    if not folder.is_dir():
        raise DownloadError(f"data.local.{spec.name}: {folder} is not a folder")
    for sub in spec.local_subdirs:
        src_dir = folder / sub
        found = sorted(p for p in src_dir.iterdir() if p.is_file()) if src_dir.is_dir() else []
        sources = [p for p in found if p.suffix.lower() in images.IMAGE_SUFFIXES and not p.name.startswith(".")]
        if sources:
            break
    else:
        tried = ", ".join(str(folder / s) for s in spec.local_subdirs)
        raise ImageError(f"data.local.{spec.name}: no image files in {tried}")
    others = [p.name for p in found if p not in sources]
    if others:
        shown = ", ".join(others[:10]) + (f" and {len(others) - 10} more" if len(others) > 10 else "")
        print(
            f"warning: data.local.{spec.name}: skipping {len(others)} file(s) that are not images: {shown}",
            file=sys.stderr,
        )
    entries = []
    for src in sources:
        try:
            entries.append(_entry(src.name, src.read_bytes(), str(src)))
        except ImageError as e:
            raise ImageError(f"{e} (data.local.{spec.name}: a file named like an image must be one)") from None
        _link_or_copy(src, tmp / src.name)
    return entries


def _from_sample(name: str, tmp: Path) -> list[dict[str, Any]]:
    """Write the bundled scikit-image photos as PNG."""
    entries = []
    for photo, rgb in datasets.sample_images(name).items():
        path = tmp / f"{photo}.png"
        images.write_png(path, rgb)
        entries.append(_entry(path.name, path.read_bytes(), str(path)))
    return entries


def _from_url(
    spec: DatasetSpec, url: str, archive: Path, tmp: Path, progress: bool
) -> tuple[str, list[dict[str, Any]]]:
    """Download (or reuse) the archive, extract the image members; (archive sha256, entries)."""
    digest = download(url, archive, spec.sha256, spec.size, progress=progress)
    files = extract(archive, spec.members, tmp)
    if not files:
        raise DownloadError(f"{archive}: no member matches {spec.members!r}")
    return digest, [_entry(p.name, p.read_bytes(), f"{archive.name}:{p.name}") for p in files]


def run(params: Params, name: str, out: Path, downloads: Path, progress: bool = True) -> dict[str, Any]:
    """Fill the folder ``out`` with set ``name`` from the first source that applies; a summary dict.

    A relative ``data.local`` folder is read from the current directory (the repo root under DVC).
    """
    spec = datasets.spec(name)
    out, digest = Path(out), None
    with files.replacing_dir(out) as tmp:
        if name in params.data.local:
            folder = Path(params.data.local[name]).expanduser()
            source, location = "local", str(folder)
            entries = _from_local(spec, folder, tmp)
        elif name in datasets.SAMPLE_PHOTOS:
            source, location = "sample", ""
            entries = _from_sample(name, tmp)
        elif spec.url:
            archive_name = PurePosixPath(urlparse(spec.url).path).name
            source, location = "url", spec.url
            if params.data.mirror:
                source, location = "mirror", params.data.mirror.rstrip("/") + "/" + archive_name
            digest, entries = _from_url(spec, location, Path(downloads) / archive_name, tmp, progress)
        else:
            raise DownloadError(f"{name}: no URL in the catalog; set data.local.{name}: /path/to/folder")
    summary = {
        "set": name,
        "role": spec.role,
        "source": source,
        "url": location,
        "archive_sha256": digest,
        "pinned": spec.sha256 is not None,
        "output": str(out),
        "images": len(entries),
        "bytes": sum(e["size"] for e in entries),
        "files": entries,
    }
    with tracking.start_run("download", params.tracking.data_experiment):
        tracking.log_params({"set": name, "source": source, "url": location, "archive_sha256": digest or ""})
        tracking.log_metrics({"images": summary["images"], "bytes": summary["bytes"]})
        tracking.log_dict(summary, f"download_{name}.json")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.download", description=__doc__.splitlines()[0])
    parser.add_argument("set", metavar="SET", choices=sorted(datasets.CATALOG), help="a name from the catalog")
    parser.add_argument("--out", type=Path, required=True, help="the set's folder (a DVC output)")
    parser.add_argument("--downloads", type=Path, required=True, help="archive cache folder")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    try:
        s = run(params_mod.load(args.params), args.set, args.out, args.downloads)
    except (DownloadError, ImageError, ParamsError) as e:
        print(f"download {args.set}: error: {e}", file=sys.stderr)
        return 1
    pin = ""
    if s["archive_sha256"] and not s["pinned"]:
        pin = f"; archive sha256 {s['archive_sha256']} (not pinned in the catalog yet)"
    print(
        f"download {s['set']}: {s['images']} images, {s['bytes'] / 1e6:.1f} MB from {s['source']} -> {s['output']}{pin}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
