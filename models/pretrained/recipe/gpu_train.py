"""Train the shipped model on one GPU with the pipeline's own code.

Made for a machine with PyTorch, OpenCV and scikit-image but no DVC/MLflow and no internet:

    python -m models.pretrained.recipe.gpu_train --train gpu_data/train --extra gpu_data/extra \
        --init models/pretrained/model.pt --plan .gpu_state/bench_after.json --out OUT --minutes 8

Steps: (1) decode every image under --train and --extra (every 50th image of --train is held
out for validation, the same split as every earlier phase, so validation gains compare);
(2) validate the --init weights on those held-out crops; (3) fit() for --minutes of wall time
with params.yaml's model/loss/train sections (degradations included) and the overrides below,
the learning rate warmed up and then decayed by a cosine over the whole time; (4) write the
EMA weights as fp16 to OUT/model.pt at once, and OUT/train_log.json; (5) optionally score
LIVE1 (--qfs) and run benchmarks.bench_models (--bench).

--plan: a benchmarks.bench_models JSON measured on this GPU: training uses the fastest
torch.compile mode measured there at this batch size (eager when none is faster by 10%). A
compile that fails during training falls back to eager for the time that is left.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from pipeline import params
from pipeline.core import images
from pipeline.core.device import pick_device
from pipeline.data.degrade import validation_pairs
from pipeline.models import build_model, count_params
from pipeline.models.checkpoint import plain, read_checkpoint, save_checkpoint
from pipeline.training.loop import TrainingError, fit, validate

QFS = (10, 20, 30, 40, 50, 60, 70, 80, 90)
VAL_EVERY_NTH = 50  # every 50th image of --train (sorted) is held out, as in every earlier phase


def image_paths(folder: Path) -> list[Path]:
    return sorted(q for q in folder.rglob("*") if q.suffix.lower() in images.IMAGE_SUFFIXES)


def decode_all(paths: list[Path], min_side: int) -> tuple[list, list[Path]]:
    """Decode in parallel threads (OpenCV releases the GIL); images with a side < min_side are skipped."""
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 2)) as pool:
        decoded = list(pool.map(images.read_image, paths))
    keep = [im for im in decoded if min(im.shape[:2]) >= min_side]
    return keep, [p for p, im in zip(paths, decoded) if min(im.shape[:2]) < min_side]


def compile_mode_from_plan(plan: Path | None, batch: int, min_speedup: float = 1.1) -> tuple[str, str]:
    """(mode, reason): the fastest measured compile mode for qacnet at ``batch``, else "none"."""
    if plan is None or not plan.exists():
        return "none", f"no benchmark plan ({plan}): eager"
    rows = [
        r
        for r in json.loads(plan.read_text())["rows"]
        if r["arch"] == "qacnet" and r["batch"] == batch and "train_patches_per_s" in r
    ]
    eager = next((r["train_patches_per_s"] for r in rows if r["compile"] == "none"), None)
    best = max(rows, key=lambda r: r["train_patches_per_s"], default=None)
    if best is None or eager is None:
        return "none", f"{plan} has no qacnet rows at batch {batch} for eager and compiled: eager"
    if best["compile"] == "none" or best["train_patches_per_s"] < min_speedup * eager:
        return "none", f"no compile mode is {min_speedup:.1f}x faster than eager ({eager:.0f} patches/s)"
    return best["compile"], f"{best['train_patches_per_s']:.0f} vs {eager:.0f} patches/s eager at batch {batch}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=Path, required=True, help="training images; every 50th is held out")
    ap.add_argument("--extra", type=Path, nargs="*", default=[], help="more training folders (all used)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=7.5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3.0e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--plan", type=Path, help="bench_models JSON from this GPU: picks the compile mode")
    ap.add_argument("--compile", help="force a compile mode instead of the plan's")
    ap.add_argument("--init", type=Path, help="continue from this checkpoint's weights (its meta is kept as history)")
    ap.add_argument("--tiny", action="store_true", help="a CPU dry run: small model, small batches")
    ap.add_argument("--live1", type=Path, help="score LIVE1 (this folder) at --qfs after training")
    ap.add_argument("--qfs", default=",".join(map(str, QFS)))
    ap.add_argument("--bench", action="store_true", help="run benchmarks.bench_models (eager) at the end")
    ap.add_argument("--resume", type=Path, help="resume-state file (default: beside --out; too big to bring back)")
    ap.add_argument("--commit", default="unknown", help="git commit of this code (the device copy has no .git)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    p = params.load("params.yaml")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"
    print(
        f"torch {torch.__version__}, python {platform.python_version()}, GPU {gpu}, {os.cpu_count()} CPUs", flush=True
    )

    mode, why = (args.compile, "forced by --compile") if args.compile else compile_mode_from_plan(args.plan, args.batch)
    print(f"compile mode {mode}: {why}", flush=True)
    cfg = dataclasses.replace(
        p.train,
        steps=10**7,
        max_minutes=args.minutes,
        batch_size=args.batch,
        lr=args.lr,
        warmup_steps=args.warmup,
        val_every=2000,
        ckpt_every=2000,
        log_every=200,
        workers=args.workers,
        device="auto",
        compile=mode,
    )
    kwargs = p.model.kwargs()
    if args.tiny:
        kwargs.update(width=8, mid_blocks=1)
        cfg = dataclasses.replace(
            cfg, batch_size=8, patch_size=64, val_every=20, ckpt_every=20, log_every=10, warmup_steps=5
        )
    paths = image_paths(args.train)
    val_paths = paths[::VAL_EVERY_NTH]
    train_paths = [q for q in paths if q not in val_paths] + [q for f in args.extra for q in image_paths(f)]
    train_imgs, skipped = decode_all(train_paths, cfg.patch_size + 16)
    val_imgs, _ = decode_all(val_paths, 0)
    folders = [args.train.name] + [f.name for f in args.extra]
    print(
        f"train images {len(train_imgs)} from {', '.join(folders)} (skipped {len(skipped)} smaller than "
        f"{cfg.patch_size + 16} px), val {len(val_imgs)}, decoded in {time.time() - t0:.0f} s",
        flush=True,
    )

    init, history, val_init = None, [], {}
    if args.init:
        ckpt = read_checkpoint(args.init)
        if ckpt["arch"] != p.model.arch or ckpt["kwargs"] != plain(kwargs):
            raise SystemExit(f"{args.init}: {ckpt['arch']} {ckpt['kwargs']} does not match params.yaml's model")
        init = ckpt["weights"]
        history = ckpt["meta"].get("history", []) + [{k: v for k, v in ckpt["meta"].items() if k != "history"}]
        device = pick_device("auto")
        before = build_model(p.model.arch, **kwargs)
        before.load_state_dict({k: v.float() for k, v in init.items()})
        val_init = validate(before.to(device), validation_pairs(val_imgs), device)
        print("validation of --init: " + ", ".join(f"{k} {v:.4f}" for k, v in val_init.items()), flush=True)
        del before

    log_lines: list[dict] = []

    def log(m: dict[str, float], step: int) -> None:
        log_lines.append({"step": step, "t": round(time.time() - t0, 1), **m})
        if "val_psnr" in m or step % 1000 == 0:
            print(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in m.items()), flush=True)

    resume = args.resume or args.out.parent / (args.out.name + "_resume.pt")
    resume.unlink(missing_ok=True)
    t_fit = time.time()
    try:
        res = fit(
            p.model.arch,
            kwargs,
            train_imgs,
            val_imgs,
            cfg,
            p.loss,
            resume,
            p.digest(),
            log,
            vgg_pretrained=False,
            init=init,
        )
    except (TrainingError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - a compiler failure must not cost the session's GPU time
        if cfg.compile == "none":
            raise
        left = args.minutes - (time.time() - t_fit) / 60
        print(
            f"training with compile={cfg.compile} failed ({type(e).__name__}: {e}); eager for {left:.1f} min",
            flush=True,
        )
        mode, why = "none", f"compile {cfg.compile} failed: {type(e).__name__}"
        cfg = dataclasses.replace(cfg, compile="none", max_minutes=left)
        resume.unlink(missing_ok=True)
        res = fit(
            p.model.arch,
            kwargs,
            train_imgs,
            val_imgs,
            cfg,
            p.loss,
            resume,
            p.digest(),
            log,
            vgg_pretrained=False,
            init=init,
        )
    resume.unlink(missing_ok=True)
    meta = {
        "steps": res.step,
        "wall_s": round(res.wall_s, 1),
        "gpu": gpu,
        "torch": str(torch.__version__),
        "patches_per_s": round(res.step * cfg.batch_size / max(res.wall_s, 1e-9), 1),
        "batch_size": cfg.batch_size,
        "patch_size": cfg.patch_size,
        "train_images": len(train_imgs),
        "val": res.val,
        "val_init": val_init,
        "train_cfg": dataclasses.asdict(cfg),
        "compile_reason": why,
        "loss": dataclasses.asdict(p.loss),
        "params_digest": p.digest(),
        "git_commit": args.commit,
        "data": f"{' + '.join(folders)} (every {VAL_EVERY_NTH}th image of {args.train.name} held out for validation)",
        "params": count_params(res.model),
        "history": history,
    }
    save_checkpoint(args.out / "model.pt", p.model.arch, kwargs, res.model, meta, half=True)
    (args.out / "train_log.json").write_text(json.dumps({"meta": meta, "log": log_lines}, indent=1, default=str))
    print(
        f"saved {args.out / 'model.pt'} after {res.step} steps, {res.wall_s:.0f} s, {time.time() - t0:.0f} s total",
        flush=True,
    )

    if args.live1:
        from models.pretrained.recipe.model_card_eval import main as card_eval

        device = "cuda" if torch.cuda.is_available() else "cpu"
        card_eval(
            [
                "--ckpt",
                str(args.out / "model.pt"),
                "--gt",
                str(args.live1),
                "--qfs",
                args.qfs,
                "--modes",
                "header,blind",
                "--device",
                device,
                "--json",
                str(args.out / "live1_eval.json"),
            ]
        )
        print(f"evaluation done at {time.time() - t0:.0f} s", flush=True)
    if args.bench:
        from benchmarks.bench_models import main as bench_main

        bench_args = ["--json", str(args.out / "bench.json")]
        if args.tiny:
            bench_args += ["--archs", "qacnet,dncnn", "--train-batch", "2", "--repeats", "1", "--size", "128x96"]
        bench_main(bench_args)
    print(f"all done at {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
