"""Test-set generation (DVC stages ``refs@SET`` and ``jpeg@SET-QF``).

    python -m stages.make_testsets refs RAW OUT         -> OUT/<name>.png (e.g. data/testsets/SET/refimgs)
    python -m stages.make_testsets jpeg REFS OUT --qf QF -> OUT/<name>.jpg (data/testsets/SET/color/qf_QF)
    python -m stages.make_testsets realworld REFS OUT   -> OUT/<case>[/qf_QF]/<name>.<ext> (.../SET/realworld)

dvc.yaml names the folders (pipeline/data/datasets.py's refs_dir, jpeg_dir, realworld_dir is how the
evaluate and promote stages find them).

Ground truth is lossless PNG (grayscale sources become 3 equal channels, so every set is scored
as colour); the JPEGs are OpenCV 4:2:0 at quality QF, exactly the published protocol. The
real-world cases (``pipeline/data/realworld.py``: cropped,
re-saved, recompressed, resized, never compressed, 4:4:4) are made from the same references at
``evaluate.real_world_qfs``; a reference that itself carries a JPEG lattice (BSDS500's are JPEG
95s) is left out of the never-compressed and high-quality cases (``Case.clean_truth``) and listed
in their folders' ``excluded.json``.
Deterministic: a rerun writes byte-identical files. Images are processed in parallel across
the cores; the folder appears only when complete.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pipeline.core import files, images
from pipeline.data import realworld
from pipeline.mlops import tracking
from pipeline.params import ParamsError, load


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
    with files.replacing_dir(out) as tmp:
        jobs = [(src, tmp / f"{src.stem}{suffix}", *rest) for src, *rest in jobs]
        with ProcessPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
            sizes = list(pool.map(worker, jobs))
    return len(sizes), sum(sizes)


def _case(args: tuple[Path, Path, str, int | None]) -> int:
    src, dst, case, qf = args
    gt = images.read_image(src)
    if realworld.CASES[case].clean_truth and realworld.has_jpeg_history(gt):
        return -1
    data = realworld.make_file(case, gt, qf)
    dst.write_bytes(data)
    return len(data)


def _references(refs: Path) -> list[Path]:
    found = images.list_images(refs) if Path(refs).is_dir() else []
    if not found:
        raise images.ImageError(f"{refs}: no reference images (run `dvc repro` for the refs stage)")
    return found


def make_realworld(qfs: list[int], refs: Path, out: Path) -> dict:
    """The real-world cases of ``pipeline/data/realworld.py`` at each of ``qfs``, from the references in ``refs``."""
    sources, total, size = _references(refs), 0, 0
    with files.replacing_dir(out) as tmp:
        for case, qf, folder in realworld.case_folders(tmp, qfs):
            folder.mkdir(parents=True)
            ext = realworld.CASES[case].ext
            jobs = [(p, folder / f"{p.stem}{ext}", case, qf) for p in sources]
            with ProcessPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
                sizes = list(pool.map(_case, jobs))
            excluded = [p.name for p, n in zip(sources, sizes) if n < 0]
            if excluded:
                note = {
                    "reason": "the reference carries a JPEG quantization lattice: it cannot stand for a "
                    "never-compressed photo, nor score a high-quality JPEG's restoration",
                    "images": excluded,
                }
                (folder / "excluded.json").write_text(json.dumps(note, indent=1))
            total += sum(n >= 0 for n in sizes)
            size += sum(n for n in sizes if n > 0)
    return {"images": total, "bytes": size}


def make_refs(raw: Path, out: Path) -> dict:
    """Lossless PNG references in ``out`` from the downloaded images in ``raw``."""
    if not Path(raw).is_dir():
        raise images.ImageError(f"{raw}: data set is missing (run `dvc repro` for its download stage)")
    sources = images.list_images(raw)
    if not sources:
        raise images.ImageError(f"{raw}: no image files")
    n, size = _build(Path(out), [(p,) for p in sources], _ref, ".png")
    return {"images": n, "bytes": size}


def make_jpeg(refs: Path, out: Path, qf: int) -> dict:
    """OpenCV 4:2:0 JPEGs at quality ``qf`` in ``out`` of the references in ``refs``."""
    n, size = _build(Path(out), [(p, qf) for p in _references(refs)], _jpeg, ".jpg")
    return {"qf": qf, "images": n, "bytes": size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("refs", "jpeg", "realworld"))
    ap.add_argument("src", type=Path, help="refs: the downloaded set; jpeg, realworld: the references")
    ap.add_argument("out", type=Path, help="the folder to write (a DVC output)")
    ap.add_argument("--qf", type=int, help="jpeg: the quality, 1..100")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    if args.what == "jpeg" and (args.qf is None or not 1 <= args.qf <= 100):
        ap.error("jpeg needs --qf 1..100")
    try:
        params = load(args.params)
        if args.what == "refs":
            info = make_refs(args.src, args.out)
        elif args.what == "realworld":
            info = make_realworld(list(params.evaluate.real_world_qfs), args.src, args.out)
        else:
            info = make_jpeg(args.src, args.out, args.qf)
    except (images.ImageError, ParamsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with tracking.start_run(f"make_testsets_{args.what}", params.tracking.data_experiment):
        tracking.log_params({"src": str(args.src), "out": str(args.out), **({"qf": args.qf} if args.qf else {})})
        tracking.log_metrics({k: v for k, v in info.items() if k in ("images", "bytes")})
    print(f"{args.what} {args.out}: {info['images']} images, {info['bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
