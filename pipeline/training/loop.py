"""fit(): the training loop, top to bottom. No file layout, no MLflow: paths and a log callback
come from the caller (stages/train.py, or the GPU script).

AdamW with linear warm-up and cosine decay (by steps, or by wall time when ``max_minutes`` is
set), gradient clipping, EMA weights (what gets shipped), bf16 autocast on CUDA, channels_last,
optional torch.compile, DDP under torchrun, and resume from a checkpoint written every
``ckpt_every`` steps: a killed run restarted with the same configuration continues where the
last checkpoint left it, on the same stream of training pairs.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from pipeline.core.device import DeviceError, pick_device
from pipeline.data.degrade import (
    Degradation,
    StreamSampler,
    TrainPairs,
    collate,
    to_tensor,
    validation_pairs,
    worker_init,
)
from pipeline.evaluation.metrics import psnr
from pipeline.models import build_model
from pipeline.models.checkpoint import atomic_save
from pipeline.params import LossParams, TrainParams
from pipeline.training.losses import HybridLoss

LogFn = Callable[[dict[str, float], int], None]


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the last good checkpoint is kept."""


@dataclass
class FitResult:
    model: nn.Module  # the EMA weights, in eval mode, on the CPU
    step: int
    wall_s: float
    patches_per_s: float
    resumed_from: int
    val: dict[str, float] = field(default_factory=dict)


def lr_at(cfg: TrainParams, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from ``lr`` to ``min_lr`` over ``progress``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def ema_decay_at(decay: float, step: int) -> float:
    """The EMA decay at ``step``: warmed up from 0.1, so short runs are not dominated by the init."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(
    ema_params: list[torch.Tensor],
    params: list[torch.Tensor],
    ema_buffers: Iterable[torch.Tensor],
    buffers: Iterable[torch.Tensor],
    decay: float,
) -> None:
    """EMA step: ``ema = decay * ema + (1 - decay) * param`` for every parameter (one fused
    kernel); buffers are copied. The EMA weights are what gets saved, evaluated and shipped."""
    torch._foreach_lerp_(ema_params, params, 1 - decay)
    for b_ema, b in zip(ema_buffers, buffers):
        b_ema.copy_(b)


class TrainStep:
    """One optimizer step: forward (bf16 autocast on CUDA) + hybrid loss + backward + clipping +
    AdamW + EMA update. Shared by fit() and benchmarks.bench_models, so the benchmark times
    exactly what training runs.

    ``compile``: a torch.compile mode for the forward and the loss ("none" runs eagerly;
    "reduce-overhead" also records CUDA graphs, which removes the launch overhead of the many
    small kernels of a model this size). ``net`` is what runs the forward (the DDP wrapper under
    torchrun); ``model`` holds the parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        ema: nn.Module,
        opt: torch.optim.Optimizer,
        loss_fn: nn.Module,
        grad_clip: float,
        amp: bool,
        compile: str = "none",
        net: nn.Module | None = None,
    ) -> None:
        self.model, self.ema, self.opt, self.grad_clip = model, ema, opt, grad_clip
        self.device = next(model.parameters()).device
        self.amp = amp and self.device.type == "cuda"
        self.net, self.loss_fn = net if net is not None else model, loss_fn
        self.compile = compile
        self.forward = self._forward if compile == "none" else torch.compile(self._forward, mode=compile)
        self.params, self.ema_params = list(model.parameters()), list(ema.parameters())

    def _forward(self, lq: torch.Tensor, gt: torch.Tensor, qf: torch.Tensor) -> tuple[torch.Tensor, dict]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.net(lq, qf)
        return self.loss_fn(type(out)([p.float() for p in out.preds], out.qf), gt, qf)

    def __call__(
        self, lq: torch.Tensor, gt: torch.Tensor, qf: torch.Tensor, lr: float, ema_decay: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Returns (loss, loss parts, gradient norm), still on the device (no synchronisation)."""
        for g in self.opt.param_groups:
            g["lr"] = lr
        if self.compile == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs may be reused
        loss, parts = self.forward(lq, gt, qf)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.opt.step()
        update_ema(self.ema_params, self.params, self.ema.buffers(), self.model.buffers(), ema_decay)
        if self.compile == "reduce-overhead":  # CUDA-graph outputs are overwritten by the next step
            loss, parts = loss.clone(), {k: v.clone() for k, v in parts.items()}
        return loss.detach(), parts, gnorm


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; the fused CUDA kernel on a GPU (one launch for all parameters instead of dozens)."""
    fused = next(model.parameters()).device.type == "cuda"
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99), fused=fused)


@torch.no_grad()
def validate(
    model: nn.Module, pairs: list[tuple[np.ndarray, np.ndarray, int]], device: torch.device
) -> dict[str, float]:
    """Mean PSNR (RGB) of the model in blind mode, of the JPEG input, and the QF error."""
    model.eval()
    out_psnr, in_psnr, qf_err = [], [], []
    for lq, gt, q in pairs:
        res = model(to_tensor(lq)[None].to(device))
        pred = (res.preds[-1][0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        out_psnr.append(psnr(gt, pred))
        in_psnr.append(psnr(gt, lq))
        if res.qf is not None:
            qf_err.append(abs(float(res.qf[0]) - q))
    val = {"val_psnr": float(np.mean(out_psnr)), "val_psnr_jpeg": float(np.mean(in_psnr))}
    val["val_gain"] = val["val_psnr"] - val["val_psnr_jpeg"]
    if qf_err:
        val["val_qf_mae"] = float(np.mean(qf_err))
    return val


def setup_ddp(cfg: TrainParams) -> tuple[torch.device, int, int]:
    """(device, world size, rank): one process per device under torchrun (NCCL on CUDA, gloo on
    the CPU), joined into the process group; a single process otherwise."""
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    try:
        device = pick_device(cfg.device)
    except DeviceError as e:
        raise TrainingError(f"train.device: {e}") from None
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return device, world, rank


def resume(
    path: Path, digest: str, model: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer, verbose: bool
) -> tuple[int, float]:
    """Load the resume state when it belongs to this configuration; (step, elapsed seconds)."""
    if not path.exists():
        return 0, 0.0
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("digest") != digest:
        if verbose:
            print(f"ignoring {path}: it belongs to another configuration (digest {state.get('digest')} != {digest})")
        return 0, 0.0
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["opt"])
    if verbose:
        print(f"resuming from {path} at step {int(state['step'])}")
    return int(state["step"]), float(state["elapsed"])


def make_loader(
    images: list[np.ndarray], cfg: TrainParams, step: int, rank: int, world: int, device: torch.device
) -> torch.utils.data.DataLoader:
    """Batches of on-the-fly training pairs, continuing the stream at ``step`` (a resumed run sees
    the pairs it would have seen); each of ``world`` processes takes its share."""
    items = cfg.batch_size // cfg.patches_per_image // world
    if items < 1:
        raise TrainingError(
            f"train.batch_size {cfg.batch_size} is too small for {world} processes x {cfg.patches_per_image} patches"
        )
    deg = Degradation(
        cfg.qf_min, cfg.qf_max, cfg.double_jpeg_prob, cfg.gray_prob, cfg.align_prob, cfg.resize_prob, cfg.clean_prob
    )
    return torch.utils.data.DataLoader(
        TrainPairs(images, cfg.patch_size, deg, cfg.seed, cfg.patches_per_image),
        batch_size=items,
        sampler=StreamSampler(step * items * world, rank, world),
        num_workers=cfg.workers,
        collate_fn=collate,
        worker_init_fn=worker_init,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if cfg.workers > 0 else None,
    )


class Throughput:
    """Patches per second and the share of time spent waiting for data, over a logging window."""

    def __init__(self) -> None:
        self.t, self.n, self.wait, self.rate = time.time(), 0, 0.0, 0.0

    def read(self) -> dict[str, float]:
        window = max(time.time() - self.t, 1e-9)
        self.rate, share = self.n / window, self.wait / window
        self.t, self.n, self.wait = time.time(), 0, 0.0
        return {"patches_per_s": self.rate, "data_wait_share": share}


def fit(
    arch: str,
    kwargs: dict[str, Any],
    train_images: list[np.ndarray],
    val_images: list[np.ndarray],
    cfg: TrainParams,
    loss_cfg: LossParams,
    resume_path: Path,
    digest: str,
    log: LogFn | None = None,
    vgg_pretrained: bool = True,
    init: dict[str, torch.Tensor] | None = None,
) -> FitResult:
    """Train ``arch(**kwargs)``; returns the EMA model. Only rank 0 logs and writes files.

    ``init``: weights to start from (continued training) instead of a fresh initialisation.
    """
    device, world, rank = setup_ddp(cfg)
    main = rank == 0
    torch.manual_seed(cfg.seed + rank)
    model = build_model(arch, **kwargs)
    if init is not None:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in init.items()})
    model = model.to(device, memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    loss_fn = HybridLoss(loss_cfg.weights(), loss_cfg.stage_weight, vgg_pretrained).to(device)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    step, elapsed = resume(resume_path, digest, model, ema, opt, main)
    resumed_from, time_limit = step, cfg.max_minutes * 60.0

    def progress(s: int, t: float) -> float:
        return max(s / cfg.steps, t / time_limit if time_limit > 0 else 0.0)

    def save_state() -> None:
        if main:
            atomic_save(
                {
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "elapsed": elapsed,
                    "digest": digest,
                },
                resume_path,
            )

    data = iter(make_loader(train_images, cfg, step, rank, world, device))
    net = (
        nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        if world > 1
        else model
    )
    train_step = TrainStep(model, ema, opt, loss_fn, cfg.grad_clip, cfg.amp, cfg.compile, net)
    val_pairs, val, speed = validation_pairs(val_images), {}, Throughput()
    t_start = time.time() - elapsed
    # Redraw at most once a minute when the output is a log file, not a terminal.
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not main,
        dynamic_ncols=True,
        desc="train",
        mininterval=1.0 if sys.stderr.isatty() else 60.0,
    )
    done = progress(step, elapsed) >= 1.0
    while not done:
        t_wait = time.perf_counter()  # time the loop waits for data: the GPU starves meanwhile
        lq, gt, qf = (t.to(device, non_blocking=True) for t in next(data))
        speed.wait += time.perf_counter() - t_wait
        lq, gt = lq.contiguous(memory_format=torch.channels_last), gt.contiguous(memory_format=torch.channels_last)
        lr = lr_at(cfg, step, progress(step, elapsed))
        loss, parts, gnorm = train_step(lq, gt, qf, lr, ema_decay_at(cfg.ema_decay, step))
        step, speed.n, elapsed = step + 1, speed.n + lq.shape[0] * world, time.time() - t_start
        bar.update(1)
        done = progress(step, elapsed) >= 1.0
        if world > 1 and time_limit > 0:  # wall clocks differ: rank 0 decides when to stop
            flag = torch.tensor([float(done)], device=device)
            dist.broadcast(flag, 0)
            done = bool(flag.item())
        # Once a step goes NaN every later loss is NaN too: checking before any checkpoint is
        # written is enough to never save broken weights.
        if (step % cfg.log_every == 0 or step % cfg.ckpt_every == 0 or done) and not math.isfinite(float(loss)):
            raise TrainingError(
                f"loss became {float(loss)} at step {step} (grad norm {float(gnorm):.3g}); "
                f"the last good checkpoint is kept at {resume_path}. Lower train.lr or train.grad_clip."
            )
        if step % cfg.log_every == 0 or done:
            metrics = {
                "loss": float(loss),
                **{f"loss_{k}": float(v) for k, v in parts.items()},
                "lr": lr,
                "grad_norm": float(gnorm),
                **speed.read(),
            }
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", pps=f"{speed.rate:.0f}")
            if main and log:
                log(metrics, step)
        if main and (step % cfg.val_every == 0 or done) and val_pairs:
            val = validate(ema, val_pairs, device)
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in val.items()))
            if log:
                log(val, step)
        if step % cfg.ckpt_every == 0 or done:
            save_state()
    bar.close()
    if main and not val and val_pairs:  # a run that was already complete: report its validation
        val = validate(ema, val_pairs, device)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return FitResult(ema.float().cpu().eval(), step, elapsed, speed.rate, resumed_from, val)
