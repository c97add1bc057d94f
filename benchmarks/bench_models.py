"""Benchmark every architecture: parameters, training throughput, inference time, peak memory.

    python -m benchmarks.bench_models [--device cpu|cuda] [--archs qacnet,dncnn,fbcnn]
        [--train-batch 32] [--patch 128] [--size 768x512] [--repeats 5] [--json FILE]

Prints a table. Training throughput: forward + backward + AdamW step on random 128x128 patches
(no data loading). Inference: median time of a 768x512 image (bf16 autocast on CUDA, fp32 on
CPU), after warm-up. Peak memory: CUDA max allocated, or the process's peak RSS on CPU.
Figures are measured, never asserted: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import torch

from pipeline.models import ARCHS, build_model, count_params


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device: torch.device, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(arch: str, device: torch.device, train_batch: int, patch: int, size: tuple[int, int], repeats: int) -> dict:
    """Measure one architecture with its default arguments."""
    torch.manual_seed(0)
    amp = device.type == "cuda"
    model = build_model(arch).to(device, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    lq = torch.rand(train_batch, 3, patch, patch, device=device).contiguous(memory_format=torch.channels_last)
    gt = torch.rand_like(lq)

    def train_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(lq, torch.full((train_batch,), 30.0, device=device))
        loss = sum((p.float() - gt).abs().mean() for p in out.preds)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    t_train = _median_time(train_step, device, repeats)
    model.eval()
    w, h = size
    img = torch.rand(1, 3, h, w, device=device).contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    @torch.inference_mode()
    def infer() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            model(img)

    t_inf = _median_time(infer, device, repeats)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "arch": arch,
        "params_M": count_params(model) / 1e6,
        "train_patches_per_s": train_batch / t_train,
        "infer_ms": t_inf * 1000,
        "peak_infer_MiB": peak,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--size", default="768x512", help="inference image WxH")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    w, h = (int(v) for v in args.size.lower().split("x"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; train batch {args.train_batch}x{args.patch}^2; image {w}x{h}")
    print(f"{'arch':8} {'params':>8} {'train patches/s':>16} {'infer ms':>9} {'peak MiB':>9}")
    rows = []
    for arch in args.archs.split(","):
        r = bench(arch, device, args.train_batch, args.patch, (w, h), args.repeats)
        rows.append(r)
        print(
            f"{arch:8} {r['params_M']:7.2f}M {r['train_patches_per_s']:16.1f} {r['infer_ms']:9.1f} {r['peak_infer_MiB']:9.0f}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
