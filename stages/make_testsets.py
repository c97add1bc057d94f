"""Test-set generation (DVC stages ``refs@SET`` and ``jpeg@SET-QF``).

    python -m stages.make_testsets refs SET     -> data/testsets/SET/refimgs/<name>.png
    python -m stages.make_testsets jpeg SET QF  -> data/testsets/SET/color/qf_QF/<name>.jpg
    python -m stages.make_testsets realworld SET -> data/testsets/SET/realworld/<case>[/qf_QF]/<name>.<ext>

Ground truth is lossless PNG (grayscale sources become 3 equal channels, so every set is scored
as colour); the JPEGs are OpenCV 4:2:0 at quality QF, exactly the published protocol. The real-world cases (``pipeline/realworld.py``: cropped,
re-saved, recompressed, resized, never compressed, 4:4:4) are made from the same references at
``evaluate.real_world_qfs``; a reference that itself carries a JPEG lattice (BSDS500's are JPEG
95s) is left out of the never-compressed case and listed in that folder's ``excluded.json``.
Deterministic: a rerun writes byte-identical files. Images are processed in parallel across
the cores; the folder appears only when complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pipeline import images, realworld, tracking
from pipeline.datasets import spec
from pipeline.params import Params, ParamsError, load


def refs_dir(root: Path, name: str) -> Path:
    return root / "data" / "testsets" / name / "refimgs"


def jpeg_dir(root: Path, name: str, qf: int) -> Path:
    return root / "data" / "testsets" / name / "color" / f"qf_{qf}"


def _ref(args: tuple[Path, Path]) -> int:
    src, dst = args
    data = images.encode_png(images.read_image(src))
    dst.write_bytes(data)
    return len(data)


def _jpeg(args: tuple[Path, Path, int]) -> int:
    src, dst, qf = args
    data = images.encode_jpeg(images.read_image(src), qf)
    dst.write_bytes(data)
    return len(data)


def _build(out: Path, jobs: list[tuple], worker, suffix: str) -> tuple[int, int]:
    """Run ``worker`` over ``jobs`` into a temporary folder, then move it to ``out``."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        jobs = [(src, tmp / f"{src.stem}{suffix}", *rest) for src, *rest in jobs]
        with ProcessPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
            sizes = list(pool.map(worker, jobs))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(sizes), sum(sizes)


def realworld_dir(root: Path, name: str) -> Path:
    return root / "data" / "testsets" / name / "realworld"


def _case(args: tuple[Path, Path, str, int | None]) -> int:
    src, dst, case, qf = args
    gt = images.read_image(src)
    if case == "never_compressed" and realworld.has_jpeg_history(gt):
        return -1
    data = realworld.make_file(case, gt, qf)
    dst.write_bytes(data)
    return len(data)


def make_realworld(params: Params, name: str, root: Path) -> dict:
    refs = images.list_images(refs_dir(root, name)) if refs_dir(root, name).is_dir() else []
    if not refs:
        raise images.ImageError(f"{refs_dir(root, name)}: no reference images (run `dvc repro refs@{name}`)")
    out = realworld_dir(root, name)
    tmp = out.with_name(".realworld.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    total, size = 0, 0
    try:
        for case, qf, folder in realworld.case_folders(tmp, params.evaluate.real_world_qfs):
            folder.mkdir(parents=True)
            ext = realworld.CASES[case].ext
            jobs = [(p, folder / f"{p.stem}{ext}", case, qf) for p in refs]
            with ProcessPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
                sizes = list(pool.map(_case, jobs))
            excluded = [p.name for p, n in zip(refs, sizes) if n < 0]
            if excluded:
                note = {"reason": "the reference carries a JPEG quantization lattice: not a never-compressed photo",
                        "images": excluded}  # fmt: skip
                (folder / "excluded.json").write_text(json.dumps(note, indent=1))
            total += sum(n >= 0 for n in sizes)
            size += sum(n for n in sizes if n > 0)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"set": name, "images": total, "bytes": size}


def make_refs(params: Params, name: str, root: Path) -> dict:
    raw = root / "data" / "raw" / spec(name).role / name
    if not raw.is_dir():
        raise images.ImageError(f"{raw}: data set {name} is missing (run `dvc repro download_test@{name}`)")
    sources = images.list_images(raw)
    if not sources:
        raise images.ImageError(f"{raw}: no image files")
    n, size = _build(refs_dir(root, name), [(p,) for p in sources], _ref, ".png")
    return {"set": name, "images": n, "bytes": size}


def make_jpeg(params: Params, name: str, qf: int, root: Path) -> dict:
    refs = images.list_images(refs_dir(root, name)) if refs_dir(root, name).is_dir() else []
    if not refs:
        raise images.ImageError(f"{refs_dir(root, name)}: no reference images (run `dvc repro refs@{name}`)")
    n, size = _build(jpeg_dir(root, name, qf), [(p, qf) for p in refs], _jpeg, ".jpg")
    return {"set": name, "qf": qf, "images": n, "bytes": size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("refs", "jpeg", "realworld"))
    ap.add_argument("set")
    ap.add_argument("qf", nargs="?", type=int)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    root = Path.cwd()
    try:
        params = load(args.params)
        if args.what == "refs":
            info = make_refs(params, args.set, root)
        elif args.what == "realworld":
            info = make_realworld(params, args.set, root)
        else:
            if args.qf is None or not 1 <= args.qf <= 100:
                ap.error("jpeg needs a quality 1..100")
            info = make_jpeg(params, args.set, args.qf, root)
    except (images.ImageError, ParamsError, KeyError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 1
    with tracking.start_run(f"make_testsets_{args.what}", params.tracking.experiment):
        tracking.log_params({k: v for k, v in info.items() if k in ("set", "qf")})
        tracking.log_metrics({k: v for k, v in info.items() if k in ("images", "bytes")})
    print(
        f"{args.what} {args.set}{'' if args.qf is None else ' QF ' + str(args.qf)}: {info['images']} images, {info['bytes'] / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
