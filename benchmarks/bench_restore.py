"""Restoring on this machine's CPU: the network per engine and precision, ``restore`` end to end
against any git revision, where the time goes, peak memory, and agreement on LIVE1.

    python -m benchmarks.bench_restore [--ckpt models/pretrained/model.pt] [--rev 42396b7]
        [--engines torch,onnxruntime,openvino] [--precisions f32,bf16,int8] [--sizes 768x512,4000x3000]
        [--qf 30] [--repeats 3] [--live1 ../shared/datasets/LIVE1 --live1-qfs 10,20,...] [--json FILE]

1. network: ms per 768x512 tile per engine and precision (after a warm-up; median of --repeats),
   its speed-up over torch eager and its largest difference from torch in grey levels.
2. end to end: ``python -m pipeline.restore PHOTO -o DIR`` as a user types it, each photo size
   (a photo-like JPEG at --qf), the champion of a registry holding the shipped model: wall
   seconds from the command's start to its exit and the process's peak RSS (median of
   --repeats, after one warm-up run). The defaults, each engine and precision, and ``--help``;
   with --rev, the same command with the code of that git revision (a temporary worktree), in
   the same run, so the ratio compares like with like.
3. split: where a 12 MP photo's time goes with the defaults (start-up: imports, the champion and
   the engine; decode; decision; network; projection; encoding), in one process.
4. --live1: mean RGB PSNR per engine and precision over LIVE1 compressed at each --live1-qfs
   (OpenCV JPEG, the network conditioned on that QF, whole images, no projection), minus f32's.
Figures are printed and written (benchmarks/results/), never asserted: compare ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.stamp import Results

ROOT = Path(__file__).resolve().parent.parent


def photo(w: int, h: int) -> np.ndarray:
    """A photo-like RGB image of w x h: scikit-image's sample photos, tiled and resized."""
    from pipeline.data.datasets import sample_images

    tiles = list(sample_images("sample_train").values())
    row = np.hstack([cv2.resize(t, (512, 512), interpolation=cv2.INTER_AREA) for t in tiles[:4]])
    return cv2.resize(np.vstack([row, row[:, ::-1]]), (w, h), interpolation=cv2.INTER_CUBIC)


def configs(engines: str, precisions: str) -> list[tuple[str, str]]:
    """(engine, precision) pairs: bf16 and int8 only where the engine has them (OpenVINO)."""
    out = []
    for e in engines.split(","):
        out += [(e, p) for p in precisions.split(",") if p == "f32" or e == "openvino"]
    return out


def network(ckpt: str, cfgs: list[tuple[str, str]], qf: int, repeats: int) -> list[dict]:
    """ms per 768x512 tile per engine and precision, the network alone."""
    from pipeline.restoration.engines import EngineError, build_engine

    x = np.ascontiguousarray(photo(768, 512)[None])
    rows, ref = [], None
    for name, precision in cfgs:
        try:
            engine = build_engine(name, None, ckpt, precision)
        except EngineError as e:
            rows.append({"engine": f"{name} {precision}", "error": str(e)})
            continue
        out = engine.run(x, qf)  # warm-up (and compilation)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            engine.run(x, qf)
            times.append(time.perf_counter() - t)
        ref = out if ref is None and name == "torch" else ref
        diff = None if ref is None else float(np.abs(out - ref).max() * 255)
        rows.append({"engine": engine.label, "ms": 1000 * float(np.median(times)), "max_diff_grey": diff})
    return rows


TIME = "/usr/bin/time"  # GNU time: the peak RSS of the command alone (a child forked from this
# benchmark would report at least this process's own RSS, which the loaded engines make large)


def timed_command(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict:
    """Wall seconds and peak RSS (MiB) of one command, from its start to its exit."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        wrapped = [TIME, "-f", "%M", "-o", rss.name, *cmd] if Path(TIME).is_file() else cmd
        t = time.perf_counter()
        proc = subprocess.run(wrapped, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t
        peak = rss.read().strip().splitlines()
    output = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        return {"error": output.strip().splitlines()[-1] if output.strip() else f"exit {proc.returncode}"}
    return {"seconds": wall, "peak_rss_MiB": int(peak[-1]) / 1024 if peak else None, "output": output}


def end_to_end(
    code: Path, label: str, photos: dict[str, Path], extra: list[str], env: dict[str, str], repeats: int
) -> list[dict]:
    """``restore`` on each photo with the code in ``code``: a warm-up run, then the median of ``repeats``."""
    rows = []
    for size, src in photos.items():
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "pipeline.restore", str(src), "-o", out, "--overwrite", *extra]
            warm = timed_command(cmd, code, env)
            if "error" in warm:
                rows.append({"code": label, "size": size, "args": " ".join(extra), **warm})
                continue
            runs = [timed_command(cmd, code, env) for _ in range(repeats)]
            ok = [r for r in runs if "error" not in r]
            if not ok:
                rows.append({"code": label, "size": size, "args": " ".join(extra), **runs[0]})
                continue
            rows.append(
                {
                    "code": label,
                    "size": size,
                    "args": " ".join(extra),
                    "seconds": statistics.median(r["seconds"] for r in ok),
                    "peak_rss_MiB": max((r["peak_rss_MiB"] or 0 for r in ok), default=0) or None,
                    "said": ok[-1]["output"].strip().splitlines()[0] if ok[-1]["output"].strip() else "",
                }
            )
    return rows


def help_seconds(code: Path, env: dict[str, str], repeats: int) -> float:
    runs = [timed_command([sys.executable, "-m", "pipeline.restore", "--help"], code, env) for _ in range(repeats + 1)]
    return statistics.median(r["seconds"] for r in runs[1:] if "error" not in r)


def registry_with_champion(ckpt: Path, folder: Path) -> dict[str, str]:
    """A fresh SQLite registry whose champion is ``ckpt``, logged as the promote stage logs it;
    the environment that points ``restore`` at it."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "DVC_ROOT": str(folder),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    code = (
        "from pipeline.mlops import pyfunc, registry, tracking\n"
        "with tracking.start_run('register_pretrained', 'bench') as run:\n"
        f"    pyfunc.log_checkpoint({str(ckpt)!r})\n"
        "registry.register_version('jpeg-restoration', run.info.run_id, {}, aliases=('champion',))\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
    return env


def worktree(rev: str, dest: Path) -> Path:
    """The code of git revision ``rev`` in a temporary worktree (its own ``pipeline`` package)."""
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-f", str(dest), rev], cwd=ROOT, check=True, capture_output=True
    )
    return dest


def split(ckpt: Path, src: Path) -> dict:
    """Where one photo's time goes with the default options, in a fresh process (start-up
    included: imports, the checkpoint's graphs, the engine)."""
    code = f"""
import json, sys, time
t0 = time.perf_counter()
from pipeline.core import images
from pipeline.restoration.restorer import Restorer
restorer = Restorer.load({str(ckpt)!r})
start = time.perf_counter() - t0
t = time.perf_counter()
decoded = images.read_decoded({str(src)!r})
decode = time.perf_counter() - t
restorer.restore_decoded(decoded)
print(json.dumps({{"engine": restorer.label, "start_up": start, "decode": decode, **restorer.timings}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def live1(ckpt: str, folder: Path, cfgs: list[tuple[str, str]], qfs: list[int]) -> list[dict]:
    """Mean RGB PSNR per engine, precision and QF on LIVE1 (whole images, the network alone)."""
    from pipeline.core import images
    from pipeline.evaluation import metrics
    from pipeline.restoration.engines import EngineError, build_engine
    from pipeline.restoration.tiles import restore_float, to_uint8

    refs = [images.read_image(p) for p in images.list_images(folder)]
    rows = []
    for name, precision in cfgs:
        try:
            engine = build_engine(name, None, ckpt, precision)
        except EngineError as e:
            print(f"{name} {precision}: {e}", flush=True)
            continue
        for q in qfs:
            scores = [metrics.psnr(gt, to_uint8(restore_float(engine, images.jpeg_roundtrip(gt, q), q))) for gt in refs]
            rows.append({"engine": engine.label, "qf": q, "n": len(refs), "psnr": float(np.mean(scores))})
            print(f"{engine.label:>16} QF {q:3}: {rows[-1]['psnr']:.4f} dB ({len(refs)} images)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=ROOT / "models" / "pretrained" / "model.pt")
    ap.add_argument("--rev", default="", help="a git revision whose restore is timed beside this one")
    ap.add_argument("--engines", default="torch,onnxruntime,openvino")
    ap.add_argument("--precisions", default="f32,bf16,int8", help="bf16 and int8 apply to OpenVINO only")
    ap.add_argument("--sizes", default="768x512,4000x3000", help="photos restored end to end")
    ap.add_argument("--qf", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-end-to-end", action="store_true", help="only the network (and --live1)")
    ap.add_argument("--live1", type=Path, help="LIVE1 reference folder: PSNR per engine and precision")
    ap.add_argument("--live1-qfs", default="10,20,30,40,50,60,70,80,90")
    ap.add_argument("--json", type=Path, help="write the results here (default: benchmarks/results/bench_restore.json)")
    args = ap.parse_args(argv)
    ckpt = args.ckpt.resolve()
    cfgs = configs(args.engines, args.precisions)
    res = Results("bench_restore", args.json)
    report: dict = {"network": network(str(ckpt), cfgs, args.qf, args.repeats)}
    torch_ms = next((r["ms"] for r in report["network"] if r.get("engine") == "torch"), None)
    res.print("network alone, one 768x512 tile (median)")
    res.print(f"{'engine':>20} {'ms':>7} {'x torch':>8} {'max diff (grey)':>16}")
    for r in report["network"]:
        if "error" in r:
            res.print(f"{r['engine']:>20} {r['error']}")
            continue
        ratio = f"{torch_ms / r['ms']:8.2f}" if torch_ms else f"{'-':>8}"
        diff = "-" if r["max_diff_grey"] is None else f"{r['max_diff_grey']:.4f}"
        res.print(f"{r['engine']:>20} {r['ms']:7.0f} {ratio} {diff:>16}")
    if not args.skip_end_to_end:
        report.update(end_to_end_section(args, ckpt, cfgs, res))
    if args.live1:
        report["live1"] = live1(str(ckpt), args.live1, cfgs, [int(q) for q in args.live1_qfs.split(",")])
        res.print("\nLIVE1 mean RGB PSNR per QF, minus f32 (dB)")
        by = {(r["engine"], r["qf"]): r["psnr"] for r in report["live1"]}
        f32 = {q: p for (e, q), p in by.items() if e.endswith("f32") or e == "torch"}
        for label in dict.fromkeys(e for e, _ in by):
            diffs = [f"{by[(label, q)] - f32[q]:+.4f}" for q in sorted(f32) if (label, q) in by]
            res.print(f"{label:>20} " + " ".join(diffs))
    res.data = report
    res.write()
    return 0


def end_to_end_section(args: argparse.Namespace, ckpt: Path, cfgs: list[tuple[str, str]], res: Results) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = registry_with_champion(ckpt, tmp / "store")
        photos = {}
        for size in args.sizes.split(","):
            w, h = map(int, size.split("x"))
            photos[size] = tmp / f"photo_{size}.jpg"
            cv2.imwrite(str(photos[size]), photo(w, h)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, args.qf])
        codes = {"this code": ROOT}
        if args.rev:
            codes[args.rev] = worktree(args.rev, tmp / "rev")
        rows, helps = [], {}
        try:
            for label, code in codes.items():
                helps[label] = help_seconds(code, env, args.repeats)
                rows += end_to_end(code, label, photos, [], env, args.repeats)
            for name, precision in cfgs:
                rows += end_to_end(ROOT, "this code", photos, ["--engine", name, "--precision", precision], env, 1)
        finally:
            if args.rev:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(tmp / "rev")], cwd=ROOT, capture_output=True
                )
                shutil.rmtree(tmp / "rev", ignore_errors=True)
        out["help_seconds"], out["end_to_end"] = helps, rows
        res.print("\n`python -m pipeline.restore --help`: " + ", ".join(f"{k} {v:.2f} s" for k, v in helps.items()))
        res.print(
            "\n`python -m pipeline.restore PHOTO -o DIR [ARGS]`, champion from the registry, command start to exit"
        )
        res.print(f"{'code':>12} {'photo':>10} {'args':>34} {'seconds':>8} {'x rev':>6} {'peak MiB':>9}")
        for r in rows:
            if "error" in r:
                res.print(f"{r['code']:>12} {r['size']:>10} {r['args'] or 'defaults':>34} error: {r['error']}")
                continue
            base = next(
                (
                    b["seconds"]
                    for b in rows
                    if b["code"] == args.rev and b["size"] == r["size"] and not b["args"] and "seconds" in b
                ),
                None,
            )
            ratio = f"{r['seconds'] / base:6.2f}" if base else f"{'-':>6}"
            peak = "-" if r["peak_rss_MiB"] is None else f"{r['peak_rss_MiB']:.0f}"
            res.print(
                f"{r['code']:>12} {r['size']:>10} {r['args'] or 'defaults':>34} {r['seconds']:8.2f} {ratio} {peak:>9}"
            )
        big = max(photos, key=lambda s: np.prod([int(v) for v in s.split("x")]))
        out["split"] = split(ckpt, photos[big])
        s = out["split"]
        if "error" in s:
            res.print(f"\nsplit: error: {s['error']}")
        else:
            phases = ("start_up", "decode", "decision", "network", "projection", "encoding")
            res.print(
                f"\nwhere a {big} photo's time goes ({s['engine']}, defaults, one process): "
                + ", ".join(f"{p} {s.get(p, 0.0):.2f} s" for p in phases)
            )
    return out


if __name__ == "__main__":
    sys.exit(main())
