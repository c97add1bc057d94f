"""What ``dvc repro`` would cost with a params file, before it runs (``python -m pipeline.plan``).

Each data set's source and download size (the sizes pinned in ``pipeline/data/datasets.py``'s
CATALOG; "not pinned" where none is), the disk the run needs, the training steps with the time
they take on each GPU measured in ``models/pretrained/provenance/``, and which stages run on a
CPU (the JPEG-history detector's training, timed from the shipped detector's own record). Reads
nothing but the params, the catalog and the provenance files; downloads nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

from pipeline.data import datasets
from pipeline.params import Params
from pipeline.restoration import history

PROVENANCE = Path(__file__).resolve().parents[2] / "models" / "pretrained" / "provenance"
# Training-step benchmarks (benchmarks/bench_models.py on a GPU, 128^2 patches), newest code first;
# a row without "compile" or "batch" was measured eager at batch 32 (round2_bench_h100.log's header).
BENCHMARKS = ("round2_bench_after_h100.json", "bench_h200.json")
LOADER = "round2_loader_h100.json"
GB = 1e9


def measured_rates(arch: str, batch: int, patch: int) -> list[tuple[str, str, float]]:
    """(GPU, compile mode, training patches/s) of ``arch`` at ``batch`` x ``patch``^2, as measured."""
    rates, seen = [], set()
    for name in BENCHMARKS:
        path = PROVENANCE / name
        bench = json.loads(path.read_text()) if path.is_file() else {}
        if bench.get("patch", 128) != patch:
            continue
        for r in bench.get("rows", []):
            key = (bench["device"], r.get("compile", "none"))
            if r["arch"] == arch and r.get("batch", 32) == batch and "train_patches_per_s" in r and key not in seen:
                seen.add(key)
                rates.append((*key, float(r["train_patches_per_s"])))
    return rates


def downloads(params: Params) -> list[tuple[str, str, int | None]]:
    """(sets, where from, bytes: 0 for none, None when not pinned) per archive; sets sharing an
    archive (BSD200 and BSDS500) fetch it once."""
    archives: dict[str, list] = {}
    for name in dict.fromkeys([*params.data.train_sets, *params.data.test_sets]):
        spec = datasets.spec(name)
        if name in params.data.local:
            archives[f"local:{name}"] = [[name], f"data.local: {params.data.local[name]}", 0]
        elif spec.url is None:
            archives[f"bundled:{name}"] = [[name], "bundled with scikit-image", 0]
        elif spec.url in archives:
            archives[spec.url][0].append(name)
        else:
            base = params.data.mirror.rstrip("/") + "/" if params.data.mirror else ""
            where = base + Path(urlparse(spec.url).path).name if base else spec.url
            archives[spec.url] = [[name], where, spec.size]
    return [(", ".join(sets), where, size) for sets, where, size in archives.values()]


def plan(params: Params) -> list[str]:
    """The plan, one line each."""
    lines = ["Downloads (archives kept in data/downloads: a rerun never downloads twice):"]
    rows = downloads(params)
    for sets, where, size in rows:
        shown = "no download" if size == 0 else "size not pinned" if size is None else f"{size / GB:.1f} GB"
        lines.append(f"  {sets:24} {shown:16} {where}")
    total, unknown = sum(s for _, _, s in rows if s) / GB, sum(s is None for _, _, s in rows)
    if unknown:
        lines.append(
            f"  total {total:.1f} GB + {unknown} archive(s) whose size the catalog does not pin yet (to pin in"
            " pipeline/data/datasets.py after a first download: `ls -l data/downloads` and the sha256 it printed)"
        )
    else:
        lines.append(f"  total {total:.1f} GB")
    lines.append(
        f"Disk: about {3 * total:.1f} GB" + (" + 3x the unpinned archives" if unknown else "") + ": each archive,"
        " its extracted images in data/ and DVC's cache copy of them (`dvc config cache.type hardlink,symlink`"
        " drops the copy), plus the test sets' JPEGs."
    )
    t = params.train
    patches = t.steps * t.batch_size
    lines.append(
        f"Training: {params.model.arch}, {t.steps} steps x batch {t.batch_size} of {t.patch_size}^2 = "
        f"{patches / 1e6:.2f}M patches, compile {t.compile}, {t.nproc} process(es), {t.workers} loader workers."
    )
    rates = measured_rates(params.model.arch, t.batch_size, t.patch_size)
    for gpu, mode, rate in rates:
        mark = "  <- this configuration" if mode == t.compile else ""
        lines.append(f"  {gpu:24} compile {mode:16} {rate:6.0f} patches/s: {patches / rate / 3600:6.1f} h{mark}")
    if not rates:
        lines.append("  no GPU measurement of this arch, batch and patch size in models/pretrained/provenance/")
    loader = json.loads((PROVENANCE / LOADER).read_text()) if (PROVENANCE / LOADER).is_file() else {"rows": []}
    if rates and loader["rows"]:
        made = ", ".join(f"{r['patches_per_s']:.0f} with {r['workers']} workers" for r in loader["rows"])
        lines.append(f"  The loader must keep up: it made {made} (patches/s at batch {loader['batch']}, {LOADER}).")
    if t.nproc > 1:
        lines.append(f"  Rates are per GPU: {t.nproc} GPUs (DDP) divide the time by at most {t.nproc}.")
    lines.append(detector_line(params))
    lines.append(
        "CPU stages: download, refs, jpeg, realworld, train_detector, report and promote's bookkeeping. "
        f"train, evaluate and promote's re-scoring use the GPU when there is one (train.device {t.device}, "
        f"evaluate.device {params.evaluate.device}); on a CPU, train only presets as small as params.yaml's quickstart."
    )
    return lines


def detector_line(params: Params) -> str:
    """The train_detector stage's cost, scaled from the shipped detector's record (samples made
    per second by its worker processes; the MLP's steps are a few seconds)."""
    d = params.detector
    line = f"train_detector (CPU): {d.samples} samples, {d.steps} steps, {d.workers} processes"
    shipped = history.beside(PROVENANCE.parent / "model.pt")
    if shipped is None:
        return line + "."
    meta = history.load(shipped).meta
    per_sample = meta["seconds"]["synthesis"] * meta["params"]["workers"] / meta["samples"]
    minutes = per_sample * d.samples * 1.4 / d.workers / 60  # calibration: about 0.4 of the samples again
    return line + f": about {minutes:.0f} min (the shipped detector: {meta['seconds']['total']:.0f} s on 2 cores)."
