"""DVC stage ``download``: one data set into data/raw/<role>/<SET>/ (``python -m stages.download SET``).

Sources, the first that applies: the user's folder ``data.local.<SET>``; the bundled sample
photos (``sample_train``/``sample_test``); the catalog URL, or ``data.mirror`` + the archive's
file name. Archives are cached in data/downloads/ (not a DVC output, so a rerun never downloads
twice). Every image is decoded once to validate it. The set is built in a hidden folder next to
the output and moved into place only when complete: a failure leaves no partial output.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from pipeline import datasets, images, tracking
from pipeline import params as params_mod
from pipeline.datasets import DatasetSpec
from pipeline.fetch import DownloadError, download, extract
from pipeline.images import ImageError
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
    """Copy a user's folder: the first of the catalog's ``local_subdirs`` that holds files."""
    if not folder.is_dir():
        raise DownloadError(f"data.local.{spec.name}: {folder} is not a folder")
    for sub in spec.local_subdirs:
        src_dir = folder / sub
        files = (
            sorted(p for p in src_dir.iterdir() if p.is_file() and not p.name.startswith("."))
            if src_dir.is_dir()
            else []
        )
        if files:
            break
    else:
        tried = ", ".join(str(folder / s) for s in spec.local_subdirs)
        raise ImageError(f"data.local.{spec.name}: no image files in {tried}")
    entries = []
    for src in files:
        try:
            entries.append(_entry(src.name, src.read_bytes(), str(src)))
        except ImageError as e:
            raise ImageError(f"{e} (data.local.{spec.name} must hold only images; hidden files are ignored)") from None
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


def run(params: Params, name: str, root: Path, progress: bool = True) -> dict[str, Any]:
    """Fill ``root/data/raw/<role>/<name>/`` from the first source that applies; a summary dict."""
    spec = datasets.spec(name)
    out = Path(root) / "data" / "raw" / spec.role / name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=out.parent))
    digest = None
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the data set is not
        if name in params.data.local:
            folder = Path(root) / Path(params.data.local[name]).expanduser()
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
            archive = Path(root) / "data" / "downloads" / archive_name
            digest, entries = _from_url(spec, location, archive, tmp, progress)
        else:
            raise DownloadError(f"{name}: no URL in the catalog; set data.local.{name}: /path/to/folder")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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
    with tracking.start_run("download", params.tracking.experiment):
        tracking.log_params({"set": name, "source": source, "url": location, "archive_sha256": digest or ""})
        tracking.log_metrics({"images": summary["images"], "bytes": summary["bytes"]})
        tracking.log_dict(summary, f"download_{name}.json")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.download", description=__doc__.splitlines()[0])
    parser.add_argument("set", metavar="SET", choices=sorted(datasets.CATALOG), help="a name from the catalog")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    try:
        s = run(params_mod.load(args.params), args.set, Path.cwd())
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
