"""Train the shipped model on one GPU with the pipeline's own code, evaluate it, time the archs.

Made for a machine with PyTorch, OpenCV and scikit-image but no DVC/MLflow and no internet:

    python -m scripts.gpu_train --train gpu_data/train --live1 gpu_data/LIVE1-webp \
        --out OUT --minutes 7.5

Steps: (1) fit() on every image under --train (BSD200 + T91 here) for --minutes of wall time,
with params.yaml's model/loss/train sections and the overrides below; (2) write the EMA weights
as fp16 to OUT/model.pt at once; (3) score LIVE1 at QF 10..90 in blind and header-QF mode next
to the JPEG input; (4) benchmarks.bench_models on the GPU for all three architectures.
A dry run on the CPU with tiny settings: --minutes 0.2 --tiny.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from pipeline import images, params
from pipeline.checkpoint import plain, read_checkpoint, save_checkpoint
from pipeline.degrade import load_training_images
from pipeline.models import count_params
from pipeline.train import fit

QFS = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--live1", type=Path, default=Path("gpu_data/LIVE1-webp"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=7.5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5.0e-4)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 3))
    ap.add_argument("--double-jpeg", type=float, default=0.1)
    ap.add_argument("--tiny", action="store_true", help="a CPU dry run: small model, few QFs")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--init", type=Path, help="continue from this checkpoint's weights (its meta is kept as history)")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--qfs", default=",".join(map(str, QFS)), help="LIVE1 QFs to score at the end")
    ap.add_argument("--commit", default="unknown", help="git commit of this code (the device copy has no .git)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    p = params.load("params.yaml")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"
    print(
        f"torch {torch.__version__}, python {platform.python_version()}, GPU {gpu}, {os.cpu_count()} CPUs", flush=True
    )

    paths = sorted(q for q in args.train.rglob("*") if q.suffix.lower() in images.IMAGE_SUFFIXES)
    val_paths = paths[::50]  # 2%, spread over both folders; held out of training
    train_paths = [q for q in paths if q not in val_paths]
    cfg = dataclasses.replace(
        p.train, steps=10**7, max_minutes=args.minutes, batch_size=args.batch, patches_per_image=4,
        lr=args.lr, warmup_steps=args.warmup, val_every=2000, ckpt_every=2000, log_every=200,
        workers=args.workers, double_jpeg_prob=args.double_jpeg, device="auto",
    )  # fmt: skip
    kwargs = p.model.kwargs()
    if args.tiny:
        kwargs.update(width=8, mid_blocks=1)
        cfg = dataclasses.replace(
            cfg, batch_size=8, patch_size=64, val_every=20, ckpt_every=20, log_every=10, warmup_steps=5
        )
    train_imgs, skipped = load_training_images(train_paths, cfg.patch_size + 16)
    val_imgs = [images.read_image(q) for q in val_paths]
    print(
        f"train images {len(train_imgs)} (skipped {len(skipped)} smaller than {cfg.patch_size + 16} px), val {len(val_imgs)}",
        flush=True,
    )
    log_lines: list[dict] = []

    def log(m: dict[str, float], step: int) -> None:
        log_lines.append({"step": step, **m})
        if "val_psnr" in m or step % 1000 == 0:
            print(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()), flush=True)

    init, history = None, []
    if args.init:
        ckpt = read_checkpoint(args.init)
        if ckpt["arch"] != p.model.arch or ckpt["kwargs"] != plain(kwargs):
            raise SystemExit(f"{args.init}: {ckpt['arch']} {ckpt['kwargs']} does not match params.yaml's model")
        init = ckpt["weights"]
        history = ckpt["meta"].get("history", []) + [{k: v for k, v in ckpt["meta"].items() if k != "history"}]
    res = fit(p.model.arch, kwargs, train_imgs, val_imgs, cfg, p.loss, args.out / "resume.pt", p.digest(), log,
              vgg_pretrained=False, init=init)  # fmt: skip
    (args.out / "resume.pt").unlink(missing_ok=True)  # optimizer state: too big to bring back
    meta = {
        "steps": res.step, "wall_s": round(res.wall_s, 1), "gpu": gpu, "torch": str(torch.__version__),
        "patches_per_s": round(res.patches_per_s, 1), "batch_size": cfg.batch_size, "patch_size": cfg.patch_size,
        "train_images": len(train_imgs), "val": res.val, "train_cfg": dataclasses.asdict(cfg),
        "loss": dataclasses.asdict(p.loss), "params_digest": p.digest(), "git_commit": args.commit,
        "data": "BSD200 + T91 (../shared/datasets/train), every 50th image held out for validation",
        "params": count_params(res.model), "history": history,
    }  # fmt: skip
    save_checkpoint(args.out / "model.pt", p.model.arch, kwargs, res.model, meta, half=True)
    (args.out / "train_log.json").write_text(json.dumps({"meta": meta, "log": log_lines}, indent=1, default=str))
    print(
        f"saved {args.out / 'model.pt'} after {res.step} steps, {res.wall_s:.0f} s, {time.time() - t0:.0f} s total",
        flush=True,
    )

    if args.qfs:  # "" skips the evaluation (it can be run on any machine afterwards)
        from scripts.model_card_eval import main as card_eval

        device = "cuda" if torch.cuda.is_available() else "cpu"
        card_eval(["--ckpt", str(args.out / "model.pt"), "--gt", str(args.live1), "--qfs", args.qfs,
                   "--modes", "header,blind", "--device", device, "--json", str(args.out / "live1_eval.json")])  # fmt: skip
        print(f"evaluation done at {time.time() - t0:.0f} s", flush=True)
    if not args.skip_bench:
        from benchmarks.bench_models import main as bench_main

        bench_args = ["--json", str(args.out / "bench.json")]
        if args.tiny:
            bench_args += ["--archs", "qacnet,dncnn", "--train-batch", "2", "--repeats", "1", "--size", "128x96"]
        bench_main(bench_args)
    print(f"all done at {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
