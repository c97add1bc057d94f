"""Benchmark every architecture: parameters, training throughput, inference time, peak memory.

    python -m benchmarks.bench_models [--device cpu|cuda] [--archs qacnet,dncnn,fbcnn]
        [--train-batch 32[,64,...]] [--patch 128] [--size 768x512] [--repeats 5]
        [--compile none[,default,reduce-overhead]] [--budget-s 0] [--json FILE]

Prints one row per (arch, compile mode, batch). Training throughput: the very step training
runs (``pipeline.training.loop.TrainStep``: forward, hybrid loss, backward, clipping, AdamW, EMA) on
random 128x128 patches, without data loading (``benchmarks.bench_loader`` measures that side).
Inference: median time of a 768x512 image (bf16 autocast on CUDA, fp32 on CPU), after warm-up;
a compiled mode compiles the model for that shape. Peak memory: CUDA max allocated during
inference, or the process's peak RSS on CPU. ``--budget-s``: skip the remaining variants once
this many seconds have passed (compilation takes tens of seconds per variant).
Figures are measured, never asserted: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.stamp import Results
from pipeline import params as params_mod
from pipeline.models import ARCHS, build_model, count_params
from pipeline.params import COMPILE_MODES
from pipeline.training.loop import TrainStep, make_optimizer
from pipeline.training.losses import HybridLoss

DEFAULT_LOSS = {"l1": 1.0, "fft": 0.05, "qf": 0.1}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):  # compiles, autotunes and records CUDA graphs
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def loss_weights(path: Path = Path("params.yaml")) -> tuple[dict[str, float], float]:
    """The project's loss (params.yaml), or L1 + FFT + QF when there is no params file."""
    if not path.exists():
        return DEFAULT_LOSS, 0.5
    loss = params_mod.load(path).loss
    return {k: w for k, w in loss.weights().items() if k != "vgg"}, loss.stage_weight


def bench_train(arch: str, device: torch.device, batch: int, patch: int, repeats: int, compile: str) -> float:
    """Training patches per second of one TrainStep configuration."""
    torch.manual_seed(0)
    model = build_model(arch).to(device, memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    weights, stage_weight = loss_weights()
    loss_fn = HybridLoss(weights, stage_weight, vgg_pretrained=False).to(device)
    step = TrainStep(model, ema, make_optimizer(model, 1e-4, 1e-4), loss_fn, 1.0, True, compile)
    lq = torch.rand(batch, 3, patch, patch, device=device).contiguous(memory_format=torch.channels_last)
    gt = (lq + 0.05 * torch.randn_like(lq)).clamp(0, 1)
    qf = torch.randint(5, 96, (batch,), device=device).float()
    model.train()
    t = _median_time(lambda: step(lq, gt, qf, 1e-4, 0.999), device, repeats)
    return batch / t


def bench_infer(
    arch: str, device: torch.device, size: tuple[int, int], repeats: int, compile: str
) -> tuple[float, float]:
    """(ms per image, peak MiB) of one inference configuration."""
    torch.manual_seed(0)
    model = build_model(arch).to(device, memory_format=torch.channels_last).eval()
    amp = device.type == "cuda"
    w, h = size
    img = torch.rand(1, 3, h, w, device=device).contiguous(memory_format=torch.channels_last)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return model(x).preds[-1]

    run = forward if compile == "none" else torch.compile(forward, mode=compile)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    @torch.inference_mode()
    def infer() -> None:
        run(img)

    t = _median_time(infer, device, repeats)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return t * 1000, peak


def _cell(row: dict, key: str, fmt: str) -> str:
    return format(row[key], fmt) if key in row else format("-", ">" + fmt.split(".")[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--train-batch", default="32", help="comma-separated batch sizes")
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--size", default="768x512", help="inference image WxH")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compile", default="none", help=f"comma-separated modes among {', '.join(COMPILE_MODES)}")
    ap.add_argument("--no-infer", action="store_true", help="training throughput only")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=0.0,
        help="after the first variant, skip what is left once this many seconds have passed (0: never)",
    )
    ap.add_argument("--json", help="write the results here (default: benchmarks/results/bench_models.json)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    w, h = (int(v) for v in args.size.lower().split("x"))
    batches = [int(b) for b in args.train_batch.split(",")]
    modes = args.compile.split(",")
    for m in modes:
        if m not in COMPILE_MODES:
            ap.error(f"--compile: unknown mode {m!r}; known: {', '.join(COMPILE_MODES)}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    res = Results("bench_models", args.json)
    res.print(f"device: {name}; torch {torch.__version__}; train {args.patch}^2 patches; image {w}x{h}")
    res.print(
        f"{'arch':8} {'compile':16} {'params':>8} {'batch':>5} {'train patches/s':>16} {'infer ms':>9} {'peak MiB':>9}"
    )
    t0, rows, skipped = time.time(), [], []
    for arch in args.archs.split(","):
        params_m = count_params(build_model(arch)) / 1e6
        for mode in modes:
            for i, batch in enumerate(batches):
                if args.budget_s and rows and time.time() - t0 > args.budget_s:
                    skipped.append(f"{arch}/{mode}/b{batch}")
                    continue
                r: dict = {"arch": arch, "compile": mode, "params_M": params_m, "batch": batch}
                try:
                    torch._dynamo.reset()  # each variant compiles for its own static shapes
                    r["train_patches_per_s"] = bench_train(arch, device, batch, args.patch, args.repeats, mode)
                    if i == 0 and not args.no_infer:
                        torch._dynamo.reset()
                        r["infer_ms"], r["peak_infer_MiB"] = bench_infer(arch, device, (w, h), args.repeats, mode)
                except Exception as e:  # noqa: BLE001 - a failing compile mode is a result, not a crash
                    r["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                rows.append(r)
                res.print(
                    f"{arch:8} {mode:16} {params_m:7.2f}M {batch:5d} {_cell(r, 'train_patches_per_s', '16.1f')} "
                    f"{_cell(r, 'infer_ms', '9.2f')} {_cell(r, 'peak_infer_MiB', '9.0f')} {r.get('error', '')}"
                )
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    if skipped:
        res.print(f"skipped (over --budget-s {args.budget_s:g}): {', '.join(skipped)}")
    res.data = {
        "device": name,
        "torch": torch.__version__,
        "patch": args.patch,
        "size": [w, h],
        "rows": rows,
        "skipped": skipped,
        "seconds": round(time.time() - t0, 1),
    }
    res.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
