"""Restore files and folders into an output folder: one file's failure never stops the batch."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipeline.core import images
from pipeline.core.images import ImageError
from pipeline.restoration.restorer import Restorer


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


def restore_paths(
    restorer: Restorer, inputs: Sequence[Path], outdir: Path, *, overwrite: bool = False, verbose: bool = False
) -> Summary:
    """Restore every image in ``inputs`` (files or folders) into ``outdir/<stem>.png``.

    Problems are reported on stderr naming the file, and never stop the batch; ``verbose``
    prints one line per restored file (size, the QF/grid decision and why, engine, seconds) on
    stdout. A photo left unchanged (no JPEG traces) is always reported. An image of several tiles
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
    label = f"engine {restorer.label}"
    for src in bar:
        out = outdir / f"{src.stem}.png"
        result = _restore_one(restorer, src, out, claimed, sources, overwrite, bar)
        summary.results.append(result)
        if result.status != "restored":
            tqdm.write(f"{src}: {result.status}, {result.message}", file=sys.stderr)
        elif verbose or result.qf is None:
            tqdm.write(f"{src.name}: {result.message}, {label}, {result.seconds:.2f} s")
    summary.seconds = time.perf_counter() - start
    return summary


def _restore_one(
    restorer: Restorer, src: Path, out: Path, claimed: dict[Path, Path], sources: set[Path], overwrite: bool, bar: tqdm
) -> FileResult:
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

        original = src.read_bytes() if decoded.bits == 16 else None
        data, d = restorer.restore_decoded(decoded, step, original, src.suffix)
        images.write_bytes(out, data)
    except (ImageError, OSError, ValueError, RuntimeError) as e:  # RuntimeError: e.g. out of GPU memory
        return FileResult(src, "failed", str(e).removeprefix(f"{src}: "))
    return FileResult(src, "restored", f"{w}x{h}, {d.message}", out, d.qf, d.source, time.perf_counter() - t0)
