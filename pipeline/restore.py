"""Restore JPEG photos from the command line: files or folders in, PNGs out.

    python -m pipeline.restore INPUT... -o OUTDIR [--model-uri URI | --ckpt FILE] [--q QF]
        [--tile N] [--overlap N] [--tta] [--projection auto|on|off] [--device cpu|cuda]
        [--engine auto|torch|onnxruntime|openvino] [--precision auto|f32|bf16] [--overwrite] [-v]

The model is the registry's ``models:/<register.model_name>@champion`` unless ``--model-uri`` or
``--ckpt`` says otherwise, falling back to ``register.pretrained`` when there is no champion.
Per file the QF and the 8x8 grid are decided as ``pipeline.photo`` describes: the user's
(``--q``), else the header's tables, unless the pixels show an earlier, stronger compression
on a shifted grid, else the pixels' quantization lattice, else the model's estimate; a photo
with no JPEG traces is written unchanged. ``-v`` prints the decision and why, and the engine
that ran the network (``pipeline/engines.py``: ``auto`` takes the fastest one installed).
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
from torch import nn
from tqdm import tqdm

from pipeline import images
from pipeline import params as params_mod
from pipeline.checkpoint import CheckpointError, load_checkpoint
from pipeline.device import DeviceError, pick_device
from pipeline.engines import ENGINE_CHOICES, PRECISIONS, Engine, EngineError, build_engine, resolve
from pipeline.images import Decoded, ImageError
from pipeline.photo import PROJECTIONS, encode_output, restore_photo

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


def restore_paths(model: nn.Module, inputs: Sequence[Path], outdir: Path, *, qf: int | None = None, tile: int = 0,
                  overlap: int = 64, tta: bool = False, projection: str = "auto", overwrite: bool = False,
                  verbose: bool = False, engine: Engine | None = None) -> Summary:  # fmt: skip
    """Restore every image in ``inputs`` (files or folders) into ``outdir/<stem>.png``.

    Problems are reported on stderr naming the file, and never stop the batch; ``verbose``
    prints one line per restored file (size, the QF/grid decision and why, engine, seconds) on
    stdout. A photo left unchanged (no JPEG traces) is always reported. ``engine``: see
    ``pipeline.engines.build_engine`` (None: ``model`` in torch). An image of several tiles
    reports its tiles done on stderr (the bar's postfix on a terminal, else one line per tile).
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
    label = f"engine {engine.label if engine else 'torch'}"
    for src in bar:
        out = outdir / f"{src.stem}.png"
        result = _restore_one(model, src, out, claimed, sources, qf, tile, overlap, tta, projection, overwrite, bar,
                              engine)  # fmt: skip
        summary.results.append(result)
        if result.status != "restored":
            tqdm.write(f"{src}: {result.status}, {result.message}", file=sys.stderr)
        elif verbose or result.qf is None:
            tqdm.write(f"{src.name}: {result.message}, {label}, {result.seconds:.2f} s")
    summary.seconds = time.perf_counter() - start
    return summary


def _restore_one(model: nn.Module, src: Path, out: Path, claimed: dict[Path, Path], sources: set[Path],
                 qf: int | None, tile: int, overlap: int, tta: bool, projection: str, overwrite: bool,
                 bar: tqdm, engine: Engine | None) -> FileResult:  # fmt: skip
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
        h, w = decoded.rgb.shape[:2]

        def step(done: int, total: int) -> None:
            if bar.disable and total > 1:
                print(f"{src.name}: tile {done}/{total}", file=sys.stderr, flush=True)
            bar.set_postfix_str(f"{src.name} tile {done}/{total}", refresh=total > 1)

        pred, d = restore_photo(model, decoded.rgb, decoded.header, qf, tile, overlap, tta, projection, step, engine)
        images.write_bytes(out, decoded_bytes(decoded, src) if d.unchanged else encode_output(pred, decoded))
    except (ImageError, OSError, ValueError, RuntimeError) as e:  # RuntimeError: e.g. out of GPU memory
        return FileResult(src, "failed", str(e).removeprefix(f"{src}: "))
    return FileResult(src, "restored", f"{w}x{h}, {d.message}", out, d.qf, d.source, time.perf_counter() - t0)


def decoded_bytes(decoded: Decoded, src: Path) -> bytes:
    """The input's own pixels as PNG (a photo left unchanged): same depth, alpha and channels."""
    if decoded.bits == 16 and src.suffix.lower() == ".png":
        return src.read_bytes()  # 16-bit samples were rounded to 8 bits on decoding: keep the file's
    return encode_output(decoded.rgb.astype(np.float32) / 255.0, decoded)


def _load_model(args: argparse.Namespace, p: params_mod.Params, root: Path, device: str) -> tuple[nn.Module, Path]:
    """The model the arguments ask for and its file; raises LookupError/CheckpointError with a clear message."""
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
    return load_checkpoint(path, device)[0], path


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
    ap.add_argument("--projection", choices=PROJECTIONS, help="clip the output into the JPEG's quantization cells "
                    "(default: params evaluate.projection)")  # fmt: skip
    ap.add_argument("--device", choices=("cpu", "cuda"), help="default: params evaluate.device")
    ap.add_argument("--engine", choices=ENGINE_CHOICES, help="what runs the network (default: params evaluate.engine)")
    ap.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="OpenVINO's precision (default auto: bf16 where the CPU runs it natively, measured free)",
    )
    ap.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    ap.add_argument("--params", type=Path, help="params file (default: ./params.yaml, else the checkout's)")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per file: size, QF and source, time")
    return ap


def _usage_problem(args: argparse.Namespace, tile: int, overlap: int) -> str | None:
    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        return f"no such file or folder: {', '.join(missing)}"
    if args.q is not None and not 1 <= args.q <= 100:
        return f"--q must be in 1..100, got {args.q}"
    if tile < 0 or tile % 8 or overlap < 0 or (tile and overlap >= tile):
        return f"--tile must be 0 or a multiple of 8 and --overlap in 0..tile-1, got {tile}, {overlap}"
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
    problem = _usage_problem(args, tile, overlap)
    if problem:
        return _usage_error(ap, problem)
    try:
        device = pick_device(args.device or p.evaluate.device)
        engine_name = resolve(args.engine or p.evaluate.engine, device)
    except (DeviceError, EngineError) as e:
        return _usage_error(ap, str(e))
    try:
        model, path = _load_model(args, p, params_path.resolve().parent, str(device))
        engine = build_engine(engine_name, model, path, args.precision)
    except (LookupError, CheckpointError, EngineError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = restore_paths(model, args.inputs, args.outdir, qf=args.q, tile=tile, overlap=overlap, tta=args.tta,
                            projection=args.projection or p.evaluate.projection, overwrite=args.overwrite,
                            verbose=args.verbose, engine=engine)  # fmt: skip
    print(summary.line())
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
