"""Restore JPEG photos from the command line: files or folders in, upright photos out, with
their ICC profile, EXIF and XMP.

    python -m pipeline.restore INPUT... -o OUTDIR [-r] [--format png|tiff|jpeg|webp] [--quality Q]
        [--strip-metadata] [--strength S] [--report FILE.csv] [--model-uri URI | --ckpt FILE] [--q QF]
        [--tile N] [--overlap N] [--tta] [--projection auto|on|off] [--device cpu|cuda]
        [--engine auto|torch|onnxruntime|openvino] [--precision auto|f32|bf16] [--overwrite] [-v]

The model is the registry's ``models:/<register.model_name>@champion`` unless ``--model-uri`` or
``--ckpt`` says otherwise, falling back to ``register.pretrained`` when there is no champion.
Per file the QF and the 8x8 grid are decided as ``pipeline.restoration.photo`` describes: the user's
(``--q``), else the header's tables, unless the pixels show an earlier, stronger compression
on a shifted grid, else the pixels' quantization lattice, else the model's estimate; a photo
with no JPEG traces is written unchanged. A photo is restored as the file stores it (on its
8x8 grid) and written upright. ``-v`` prints the decision and why, whether it was turned
upright, and the engine that ran the network (``pipeline/restoration/engines.py``: ``auto``
takes the fastest one installed).
Exit status: 0 all restored (or skipped), 1 some file failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.restoration.options import (
    DEVICES,
    ENGINES,
    FORMATS,
    PRECISIONS,
    PROJECTIONS,
    OptionsError,
    OutputOptions,
    RestoreOptions,
)

# Everything else is imported once the arguments are parsed (``--help`` answers at once), and
# torch and MLflow only when they are needed: the torch engine, a graph to export, a model
# registry other than this machine's own store (``pipeline/mlops/local.py``).
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _checkpoint(args: argparse.Namespace, register: Any, root: Path) -> Path:
    """The checkpoint the arguments ask for; raises LookupError with a clear message."""
    if args.ckpt:
        return Path(args.ckpt)
    from pipeline.mlops import local

    uri = args.model_uri or f"models:/{register.model_name}@champion"
    try:
        path = local.local_checkpoint(uri)
        if path is None:  # another store: MLflow takes seconds to import, only then
            from pipeline.mlops import registry

            path = registry.checkpoint_from_uri(uri)
    except LookupError as e:
        if args.model_uri:
            raise
        path = root / register.pretrained
        print(f"no champion in the model registry ({e}); using {path}", file=sys.stderr)
        if not path.is_file():
            raise LookupError(f"{path}: no such checkpoint either; pass --ckpt or --model-uri") from None
    else:
        print(f"model: {uri}", file=sys.stderr)
    return path


def _parser() -> argparse.ArgumentParser:
    d, out = RestoreOptions(), OutputOptions()
    ap = argparse.ArgumentParser(prog="python -m pipeline.restore", description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders of images")
    ap.add_argument("-o", "--outdir", required=True, type=Path, help="folder for the restored photos")
    ap.add_argument("-r", "--recursive", action="store_true", help="also restore subfolders, mirrored in OUTDIR")
    ap.add_argument("--format", choices=list(FORMATS), help=f"output format (default {out.format}; webp is lossless)")
    ap.add_argument("--quality", type=int, help=f"JPEG quality of --format jpeg, 1..100 (default {out.quality})")
    ap.add_argument(
        "--png-compression",
        type=int,
        metavar="0..9",
        help="zlib level of PNG output: smaller files, slower (default: the fastest setting)",
    )
    ap.add_argument("--strip-metadata", action="store_true", help="drop EXIF, XMP and GPS (the ICC profile stays)")
    keep = "how much of the restoration to keep, the rest is the input's grain"
    ap.add_argument("--strength", type=float, help=f"0..1: {keep} (default {d.strength:g})")
    ap.add_argument("--report", type=Path, metavar="FILE.csv", help="write a CSV line per file: decision, time, status")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model-uri", help="models:/<name>@<alias>, models:/<name>/<version> or runs:/<id>/model")
    src.add_argument("--ckpt", type=Path, help="a checkpoint file (model.pt)")
    ap.add_argument("--q", type=int, help="JPEG quality to condition on, 1..100 (default: header, else estimate)")
    ap.add_argument("--tile", type=int, help=f"tile size, a multiple of 8; 0 = whole image (default {d.tile})")
    ap.add_argument("--overlap", type=int, help=f"pixels shared by neighbouring tiles (default {d.overlap})")
    ap.add_argument("--tta", action="store_true", help="average the 8 flips/rotations (8x slower)")
    ap.add_argument(
        "--projection",
        choices=PROJECTIONS,
        help=f"clip the output into the JPEG's quantization cells (default {d.projection})",
    )
    ap.add_argument("--device", choices=DEVICES, help=f"default {d.device}")
    ap.add_argument("--engine", choices=ENGINES, help=f"what runs the network (default {d.engine}: the fastest)")
    ap.add_argument(
        "--precision",
        choices=PRECISIONS,
        help=f"OpenVINO's precision (default {d.precision}: bf16 where the CPU runs it natively)",
    )
    ap.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    ap.add_argument("--params", type=Path, help="params file (default: ./params.yaml, else the checkout's)")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per file: size, QF and source, time")
    return ap


def options_from_args(args: argparse.Namespace) -> RestoreOptions:
    """The options argv sets over the defaults (raises OptionsError naming the option)."""
    return RestoreOptions().replace(
        qf=args.q,
        tile=args.tile,
        overlap=args.overlap,
        tta=args.tta or None,
        projection=args.projection,
        engine=args.engine,
        precision=args.precision,
        device=args.device,
        strength=args.strength,
    )


def output_from_args(args: argparse.Namespace) -> OutputOptions:
    """How argv asks the photos to be written (raises OptionsError naming the option)."""
    if args.quality is not None and args.format != "jpeg":
        raise OptionsError("--quality is for --format jpeg (PNG, TIFF and WebP are lossless)")
    if args.png_compression is not None and (args.format or OutputOptions.format) != "png":
        raise OptionsError("--png-compression is for PNG output")
    return OutputOptions(
        format=args.format or OutputOptions.format,
        quality=OutputOptions.quality if args.quality is None else args.quality,
        strip_metadata=args.strip_metadata,
        png_compression=args.png_compression,
    )


def _flag(m: re.Match) -> str:
    """An option's name in an OptionsError as the command line spells it: ``qf must`` -> ``--q must``."""
    return f"--{'q' if m[1] == 'qf' else m[1].replace('_', '-')} must"


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
    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        return _usage_error(ap, f"no such file or folder: {', '.join(missing)}")
    params_path = args.params or next(
        (p for p in (Path("params.yaml"), PACKAGE_ROOT / "params.yaml") if p.is_file()), Path("params.yaml")
    )
    from pipeline import params as params_mod
    from pipeline.core.device import device_name
    from pipeline.restoration.batch import restore_paths
    from pipeline.restoration.engines import resolve
    from pipeline.restoration.restorer import Restorer

    try:
        register = params_mod.load(params_path, check_archs=False).register
        options, output = options_from_args(args), output_from_args(args)
        resolve(options.engine, device_name(options.device))  # an engine that cannot run: before loading anything
    except ValueError as e:  # ParamsError, OptionsError, DeviceError, EngineError
        return _usage_error(ap, re.sub(r"^(qf|strength|quality|format|png_compression) must", _flag, str(e)))
    try:
        restorer = Restorer.load(_checkpoint(args, register, params_path.resolve().parent), options)
    except (LookupError, ValueError, OSError) as e:  # no such model; CheckpointError, EngineError
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = restore_paths(
        restorer,
        args.inputs,
        args.outdir,
        output=output,
        recursive=args.recursive,
        overwrite=args.overwrite,
        verbose=args.verbose,
        report=args.report,
    )
    print(summary.line() + (f"; report: {args.report}" if args.report and not summary.report_error else ""))
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
