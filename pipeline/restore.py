"""Restore JPEG photos from the command line: files or folders in, PNGs out.

    python -m pipeline.restore INPUT... -o OUTDIR [--model-uri URI | --ckpt FILE] [--q QF]
        [--tile N] [--overlap N] [--tta] [--device cpu|cuda] [--overwrite] [-v]

The model is the registry's ``models:/<register.model_name>@champion`` unless ``--model-uri`` or
``--ckpt`` says otherwise, falling back to ``register.pretrained`` when there is no champion.
Per file the QF is the user's (``--q``), else the JPEG header's, else the model's estimate.
Exit status: 0 all restored (or skipped), 1 some file failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline import images
from pipeline import params as params_mod
from pipeline.checkpoint import CheckpointError, load_checkpoint
from pipeline.images import Decoded, ImageError
from pipeline.inference import estimate_qf, restore_float

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class FileResult:
    """What happened to one input: status is "restored", "failed" or "skipped"."""

    path: Path
    status: str
    message: str = ""
    output: Path | None = None
    qf: float | None = None
    qf_source: str = ""
    seconds: float = 0.0


@dataclass
class Summary:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def exit_code(self) -> int:
        return 1 if self.count("failed") else 0

    def line(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("restored", "failed", "skipped"))
        return f"{counts} in {self.seconds:.1f} s"


def collect_inputs(inputs: Sequence[Path]) -> tuple[list[Path], list[FileResult]]:
    """Files to try, and the entries of folders that are not images (reported as skipped).

    A folder contributes its files, non-recursively and sorted; a file named explicitly is
    always tried, whatever its suffix, so a non-image given by name is a failure.
    """
    files, skipped = [], []
    for path in map(Path, inputs):
        if not path.is_dir():
            files.append(path)
            continue
        for entry in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
            if entry.suffix.lower() in images.IMAGE_SUFFIXES:
                files.append(entry)
            else:
                skipped.append(FileResult(entry, "skipped", "not an image file"))
    return files, skipped


def _quantize(img: np.ndarray, bits: int) -> np.ndarray:
    """Float [0, 1] -> uint8 or uint16, rounding in place (no full-size float temporaries)."""
    np.clip(img, 0.0, 1.0, out=img)
    img *= 65535.0 if bits == 16 else 255.0
    img += 0.5
    return img.astype(np.uint16 if bits == 16 else np.uint8)


def encode_output(pred: np.ndarray, decoded: Decoded) -> bytes:
    """PNG bytes of ``restore_float``'s output (float32 HWC, overwritten) in the input's form:
    grayscale stays one channel, 16-bit stays 16-bit, alpha is kept unchanged."""
    bits = 16 if decoded.bits == 16 else 8
    alpha = decoded.alpha
    if alpha is not None and bits == 16:
        alpha = alpha.astype(np.uint16) * 257  # decode_image hands alpha over at 8 bits
    if decoded.gray and alpha is None:
        return images.encode_png(_quantize(pred.mean(axis=2), bits))
    return images.encode_png(_quantize(pred, bits), alpha)


def choose_qf(model: nn.Module, decoded: Decoded, qf: int | None) -> tuple[float | None, str]:
    """The QF to restore with and where it came from: the user's, the JPEG header's, else estimated."""
    if qf is not None:
        return float(qf), "user"
    if decoded.qf is not None:
        return float(decoded.qf), "header" if decoded.qf_exact else "header, approximate"
    return estimate_qf(model, decoded.rgb), "estimated"


def restore_paths(model: nn.Module, inputs: Sequence[Path], outdir: Path, *, qf: int | None = None, tile: int = 0,
                  overlap: int = 64, tta: bool = False, overwrite: bool = False,
                  verbose: bool = False) -> Summary:  # fmt: skip
    """Restore every image in ``inputs`` (files or folders) into ``outdir/<stem>.png``.

    Problems are reported on stderr naming the file, and never stop the batch; ``verbose``
    prints one line per restored file (size, QF and its source, seconds) on stdout.
    """
    start = time.perf_counter()
    outdir = Path(outdir)
    files, skipped = collect_inputs(inputs)
    summary = Summary(results=list(skipped))
    for r in skipped:
        tqdm.write(f"{r.path}: skipped, {r.message}", file=sys.stderr)
    claimed: dict[Path, Path] = {}
    sources = {f.resolve() for f in files if f.exists()}
    bar = tqdm(files, unit="file", disable=None, file=sys.stderr)
    for src in bar:
        out = outdir / f"{src.stem}.png"
        result = _restore_one(model, src, out, claimed, sources, qf, tile, overlap, tta, overwrite, bar)
        summary.results.append(result)
        if result.status != "restored":
            tqdm.write(f"{src}: {result.status}, {result.message}", file=sys.stderr)
        elif verbose:
            qf_text = "none" if result.qf is None else f"{result.qf:.0f}"
            tqdm.write(f"{src.name}: {result.message}, QF {qf_text} ({result.qf_source}), {result.seconds:.2f} s")
    summary.seconds = time.perf_counter() - start
    return summary


def _restore_one(model: nn.Module, src: Path, out: Path, claimed: dict[Path, Path], sources: set[Path],
                 qf: int | None, tile: int, overlap: int, tta: bool, overwrite: bool, bar: tqdm) -> FileResult:  # fmt: skip
    t0 = time.perf_counter()
    if out in claimed:  # a.jpg and a.png in one batch would both become a.png
        return FileResult(src, "failed", f"same output name {out} as {claimed[out]}")
    claimed[out] = src
    if out.resolve() in sources:  # restoring into the input folder must not replace an input
        return FileResult(src, "failed", f"output {out} would replace an input file")
    if out.exists() and not overwrite:
        return FileResult(src, "skipped", f"{out} exists (use --overwrite to replace it)")
    try:
        decoded = images.read_decoded(src)
        use_qf, source = choose_qf(model, decoded, qf)
        h, w = decoded.rgb.shape[:2]

        def step(done: int, total: int) -> None:
            bar.set_postfix_str(f"{src.name} tile {done}/{total}", refresh=False)

        pred = restore_float(model, decoded.rgb, use_qf, tile, overlap, tta, progress=step)
        images.write_bytes(out, encode_output(pred, decoded))
    except (ImageError, OSError, ValueError, RuntimeError) as e:  # RuntimeError: e.g. out of GPU memory
        return FileResult(src, "failed", str(e).removeprefix(f"{src}: "))
    return FileResult(src, "restored", f"{w}x{h}", out, use_qf, source, time.perf_counter() - t0)


def _load_model(args: argparse.Namespace, p: params_mod.Params, root: Path, device: str) -> nn.Module:
    """The model the arguments ask for; raises LookupError/CheckpointError with a clear message."""
    if args.ckpt:
        path = Path(args.ckpt)
    else:
        # mlflow takes seconds to import: only when the registry is used
        from pipeline import tracking

        uri = args.model_uri or f"models:/{p.register.model_name}@champion"
        try:
            path = tracking.checkpoint_from_uri(uri)
        except LookupError as e:
            if args.model_uri:
                raise
            path = root / p.register.pretrained
            print(f"no champion in the model registry ({e}); using {path}", file=sys.stderr)
            if not path.is_file():
                raise LookupError(f"{path}: no such checkpoint either; pass --ckpt or --model-uri") from None
        else:
            print(f"model: {uri}", file=sys.stderr)
    return load_checkpoint(path, device)[0]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pipeline.restore", description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders of images")
    ap.add_argument("-o", "--outdir", required=True, type=Path, help="folder for the restored PNGs")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model-uri", help="models:/<name>@<alias>, models:/<name>/<version> or runs:/<id>/model")
    src.add_argument("--ckpt", type=Path, help="a checkpoint file (model.pt)")
    ap.add_argument("--q", type=int, help="JPEG quality to condition on, 1..100 (default: header, else estimate)")
    ap.add_argument("--tile", type=int, help="tile size, a multiple of 8; 0 = whole image (default: params)")
    ap.add_argument("--overlap", type=int, help="blended overlap of tiles in pixels (default: params)")
    ap.add_argument("--tta", action="store_true", help="average the 8 flips/rotations (8x slower)")
    ap.add_argument("--device", choices=("cpu", "cuda"), help="default: params evaluate.device")
    ap.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    ap.add_argument("--params", type=Path, help="params file (default: ./params.yaml, else the checkout's)")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per file: size, QF and source, time")
    return ap


def _usage_problem(args: argparse.Namespace, tile: int, overlap: int, device: str) -> str | None:
    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        return f"no such file or folder: {', '.join(missing)}"
    if args.q is not None and not 1 <= args.q <= 100:
        return f"--q must be in 1..100, got {args.q}"
    if tile < 0 or tile % 8 or overlap < 0 or (tile and overlap >= tile):
        return f"--tile must be 0 or a multiple of 8 and --overlap in 0..tile-1, got {tile}, {overlap}"
    if device == "cuda" and not torch.cuda.is_available():
        return "--device cuda: no CUDA device is available"
    return None


def _usage_error(ap: argparse.ArgumentParser, message: str) -> int:
    ap.print_usage(sys.stderr)
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    ap = _parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on bad usage, 0 for --help
        return int(e.code or 0)
    params_path = args.params or next(
        (p for p in (Path("params.yaml"), PACKAGE_ROOT / "params.yaml") if p.is_file()), Path("params.yaml")
    )
    try:
        p = params_mod.load(params_path)
    except params_mod.ParamsError as e:
        return _usage_error(ap, str(e))
    tile = p.evaluate.tile if args.tile is None else args.tile
    overlap = p.evaluate.overlap if args.overlap is None else args.overlap
    device = args.device or p.evaluate.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    problem = _usage_problem(args, tile, overlap, device)
    if problem:
        return _usage_error(ap, problem)
    try:
        model = _load_model(args, p, params_path.resolve().parent, device)
    except (LookupError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = restore_paths(model, args.inputs, args.outdir, qf=args.q, tile=tile, overlap=overlap, tta=args.tta,
                            overwrite=args.overwrite, verbose=args.verbose)  # fmt: skip
    print(summary.line())
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
