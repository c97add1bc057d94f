"""Restore files and folders into an output folder: one file's failure never stops the batch.

Folders give their images (``recursive``: their subfolders' too, mirrored in the output
folder). Each output is written atomically (a temporary file beside it, renamed into place) and
an existing output is skipped, so a batch killed at any point and run again restores every
photo exactly once. The report (CSV, also written atomically) says what happened to each file.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipeline.core import images
from pipeline.core.files import write_bytes
from pipeline.core.images import ImageError
from pipeline.restoration.options import FORMATS, OutputOptions
from pipeline.restoration.restorer import Restorer

REPORT_COLUMNS = ("file", "output", "status", "size", "qf", "qf_source", "decision", "reading", "seconds", "message")
LEFTOVER = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{8}\.tmp$")  # files.replacing's temporary name for <name>


@dataclass
class FileResult:
    """What happened to one input: status is "restored", "failed" or "skipped"; message: why it
    failed or was skipped, or what of the input its output could not keep."""

    path: Path
    status: str
    message: str = ""
    output: Path | None = None
    size: tuple[int, int] | None = None
    qf: float | None = None
    qf_source: str = ""
    decision: str = ""
    reading: str = ""  # the JPEG-history detector's line, when it was asked
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds: decode, decision, network, ...

    def row(self) -> dict[str, str]:
        """The report's row."""
        return {
            "file": str(self.path),
            "output": "" if self.output is None else str(self.output),
            "status": self.status,
            "size": "" if self.size is None else f"{self.size[0]}x{self.size[1]}",
            "qf": "" if self.qf is None else f"{self.qf:g}",
            "qf_source": self.qf_source,
            "decision": self.decision,
            "reading": self.reading,
            "seconds": f"{self.seconds:.2f}",
            "message": self.message,
        }


@dataclass
class Summary:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    report_error: str = ""

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def exit_code(self) -> int:
        return 1 if self.count("failed") or self.report_error else 0

    def line(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("restored", "failed", "skipped"))
        return f"{counts} in {self.seconds:.1f} s"


def collect_inputs(
    inputs: Sequence[Path], recursive: bool = False, outdir: Path | None = None
) -> tuple[list[tuple[Path, Path]], list[FileResult]]:
    """(file, its path relative to the input it came from) pairs to try, and what was skipped:
    entries of folders that are not images, and subfolders unless ``recursive``.

    Folders give their images sorted by name, never hidden files or folders nor ``outdir``; a
    file named explicitly is always tried, whatever its suffix, so a non-image given by name is a
    failure.
    """
    files, skipped = [], []
    out = outdir.resolve() if outdir is not None else None
    for path in map(Path, inputs):
        if not path.is_dir():
            files.append((path, Path(path.name)))
            continue
        for folder, dirs, names in os.walk(path):
            here = Path(folder)
            subdirs = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != out)
            dirs[:] = subdirs if recursive else []
            if not recursive:
                skipped += [FileResult(here / d, "skipped", "a folder (use -r to restore subfolders)") for d in subdirs]
            for name in sorted(n for n in names if not n.startswith(".")):
                entry = here / name
                if entry.suffix.lower() in images.IMAGE_SUFFIXES:
                    files.append((entry, entry.relative_to(path)))
                else:
                    skipped.append(FileResult(entry, "skipped", "not an image file"))
    return files, skipped


def restore_paths(
    restorer: Restorer,
    inputs: Sequence[Path],
    outdir: Path,
    *,
    output: OutputOptions | None = None,
    recursive: bool = False,
    overwrite: bool = False,
    verbose: bool = False,
    report: Path | None = None,
) -> Summary:
    """Restore every image in ``inputs`` (files or folders) into ``outdir`` (``output``'s format,
    the input's name and, with ``recursive``, its subfolder), writing ``report`` (CSV) at the end,
    also when the batch is interrupted.

    Problems are reported on stderr naming the file, and never stop the batch; so is what of a
    photo its output could not keep (a corrupt EXIF, an invalid ICC profile). ``verbose`` prints
    one line per restored file (size, the QF/grid decision and why, turned upright, engine,
    seconds) on stdout; a photo left unchanged (no JPEG traces) is always reported. An image of
    several tiles reports its tiles done on stderr (the bar's postfix on a terminal, else one
    line per tile).
    """
    start = time.perf_counter()
    outdir, output = Path(outdir), output or OutputOptions()
    files, skipped = collect_inputs(inputs, recursive, outdir)
    summary = Summary(results=list(skipped))
    for r in skipped:
        tqdm.write(f"{r.path}: skipped, {r.message}", file=sys.stderr)
    claimed: dict[Path, Path] = {}
    sources = {f.resolve() for f, _ in files if f.exists()}
    leftovers = Leftovers()
    bar = tqdm(files, unit="file", disable=None, file=sys.stderr)
    s = restorer.options.strength
    label = ("" if s == 1 else f"strength {s:g}, ") + f"engine {restorer.label}"
    try:
        for src, rel in bar:
            out = outdir / rel.with_suffix(FORMATS[output.format])
            result = _restore_one(restorer, src, out, output, claimed, sources, overwrite, leftovers, bar)
            summary.results.append(result)
            if result.status != "restored":
                tqdm.write(f"{src}: {result.status}, {result.message}", file=sys.stderr)
                continue
            if result.message:
                tqdm.write(f"{src}: warning: {result.message}", file=sys.stderr)
            if verbose or result.qf is None:
                w, h = result.size
                split = ", ".join(f"{k} {v:.2f}" for k, v in result.phases.items() if v >= 0.005)
                tqdm.write(
                    f"{rel}: {w}x{h}, {result.decision}, {label}, {result.seconds:.2f} s"
                    + (f" ({split})" if verbose and split else "")
                    + (
                        f"; {result.reading}"
                        if verbose and result.reading and result.reading not in result.decision
                        else ""
                    )
                )
    finally:
        summary.seconds = time.perf_counter() - start
        if report is not None:
            try:
                write_report(report, summary.results)
            except OSError as e:
                summary.report_error = f"cannot write the report {report} ({e.strerror or e})"
                print(f"error: {summary.report_error}", file=sys.stderr)
    return summary


def write_report(path: Path, results: Sequence[FileResult]) -> None:
    """The CSV report, written atomically: one row per input (``REPORT_COLUMNS``)."""
    buf = io.StringIO()
    rows = csv.DictWriter(buf, REPORT_COLUMNS)
    rows.writeheader()
    rows.writerows(r.row() for r in results)
    write_bytes(path, buf.getvalue().encode())


class Leftovers:
    """Temporary files a killed batch left beside its outputs, found once per output folder and
    removed when the output they were for is written."""

    def __init__(self) -> None:
        self.found: dict[Path, dict[str, list[Path]]] = {}

    def clear(self, out: Path) -> None:
        if out.parent not in self.found:
            by_name: dict[str, list[Path]] = {}
            for p in out.parent.iterdir() if out.parent.is_dir() else ():
                if m := LEFTOVER.match(p.name):
                    by_name.setdefault(m.group(1), []).append(p)
            self.found[out.parent] = by_name
        for p in self.found[out.parent].pop(out.name, []):
            p.unlink(missing_ok=True)


def _restore_one(
    restorer: Restorer,
    src: Path,
    out: Path,
    output: OutputOptions,
    claimed: dict[Path, Path],
    sources: set[Path],
    overwrite: bool,
    leftovers: Leftovers,
    bar: tqdm,
) -> FileResult:
    t0 = time.perf_counter()
    if out in claimed:  # a.jpg and a.png in one batch would both become a.png
        return FileResult(src, "failed", f"same output name {out} as {claimed[out]}")
    claimed[out] = src
    if out.resolve() in sources:  # restoring into the input folder must not replace an input
        return FileResult(src, "failed", f"output {out} would replace an input file")
    if out.exists() and not overwrite:
        return FileResult(src, "skipped", f"{out} exists (use --overwrite to replace it)", out)

    def step(done: int, total: int) -> None:
        if bar.disable and total > 1:
            print(f"{src.name}: tile {done}/{total}", file=sys.stderr, flush=True)
        bar.set_postfix_str(f"{src.name} tile {done}/{total}", refresh=total > 1)

    before = dict(restorer.timings)
    try:
        t = time.perf_counter()
        decoded = images.read_decoded(src)
        restorer.timings["decode"] = restorer.timings.get("decode", 0.0) + time.perf_counter() - t
        result = restorer.restore_decoded(decoded, step, output)
    except (ImageError, OSError, ValueError, RuntimeError) as e:  # RuntimeError: e.g. out of GPU memory
        return FileResult(src, "failed", str(e).removeprefix(f"{src}: "))
    d = result.decision
    turned = "" if decoded.orientation == 1 else f", turned upright (EXIF orientation {decoded.orientation})"
    done = FileResult(
        src, "restored", "; ".join(result.notes), out, decoded.size, d.qf, d.source, d.message + turned, d.reading
    )
    t_write = time.perf_counter()
    try:
        leftovers.clear(out)
        write_bytes(out, result.data)  # a full or read-only folder leaves no partial file
    except OSError as e:
        done.status, done.output, done.message = "failed", None, f"cannot write {out} ({e.strerror or e})"
    t = time.perf_counter()
    done.seconds = t - t0
    done.phases = {k: v - before.get(k, 0.0) for k, v in restorer.timings.items()} | {"writing": t - t_write}
    return done
