"""Train the JPEG-history detector (``pipeline/restoration/history.py``) on training photos only,
calibrate it on held-out training photos, and return it ready to save.

Samples (``samples.py``): training photos through random histories (``histories.draw``: a JPEG
of QF 5-95 with IJG's or other encoders' tables, then crops, resizes, tone edits, sharpening, a
second JPEG; or never compressed through the same edits), as the detector's features and labels
(deterministic: a rerun writes the same weights). The network is a small MLP fitted with AdamW,
one-cycle; its weights are then handed to the NumPy ``history.Detector`` that restoring runs.

Photos come from set folders (named by the set): ``clean_sets`` were never compressed (the
never-compressed samples and the threshold for "leave unchanged" come from them), ``skip_sets``
carry JPEG histories of their own of unknown quality (left out), ``not_clean`` names photos of
a clean set that show a JPEG's traces anyway (used as compressed sources only). Every
``holdout_every``-th clean photo and every 10th other photo is held out for calibration.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.params import DetectorParams
from pipeline.restoration import history
from pipeline.training import calibration
from pipeline.training.samples import split, synthesize


def _losses(net: nn.Module, x: torch.Tensor, y: dict[str, torch.Tensor]) -> torch.Tensor:
    """jpeg: BCE weighted by how much the compression left to restore; qf: L1 over compressed
    samples, an estimate too low costing 1.5x (restoring too hard loses more than too gently);
    earlier: BCE over photos with a header; resize: L1 on log2 of the factor."""
    out = net((x - net.mean) / net.std)
    logit, qf, earlier, log_scale = out[:, 0], 1.0 + 99.0 * torch.sigmoid(out[:, 1]), out[:, 2], out[:, 3]
    bce = nn.functional.binary_cross_entropy_with_logits
    loss = (bce(logit, y["jpeg"], reduction="none") * y["jpeg_weight"]).mean()
    comp = y["jpeg"]
    err = qf - y["qf"]
    loss = loss + (err.abs() * torch.where(err < 0, 1.5, 1.0) * comp).sum() / comp.sum().clamp(min=1) / 10.0
    hd = y["header"]  # counted twice: the earlier flag is the hard part of a JPEG file's history
    loss = loss + 2.0 * (bce(earlier, y["earlier"], reduction="none") * hd).sum() / hd.sum().clamp(min=1)
    return loss + (log_scale - y["log2_scale"]).abs().mean()


def train(p: DetectorParams, x: np.ndarray, y: dict[str, np.ndarray]) -> history.Detector:
    """The MLP fitted to features ``x`` (N, F) and labels ``y`` (arrays of N), as a NumPy
    ``history.Detector`` (thresholds still to calibrate)."""
    torch.manual_seed(p.seed)
    net = nn.Sequential(
        nn.Linear(x.shape[1], p.hidden), nn.ReLU(), nn.Dropout(p.dropout),
        nn.Linear(p.hidden, p.hidden // 2), nn.ReLU(), nn.Linear(p.hidden // 2, history.OUTPUTS),
    )  # fmt: skip
    net.mean, net.std = torch.from_numpy(x.mean(0)), torch.from_numpy(x.std(0) + 1e-3)
    xt = torch.from_numpy(x)
    yt = {k: torch.from_numpy(v.astype(np.float32)) for k, v in y.items()}
    opt = torch.optim.AdamW(net.parameters(), p.lr / 2, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, p.lr, total_steps=p.steps)
    rng = np.random.default_rng(p.seed)
    net.train()
    for _ in range(p.steps):
        b = torch.from_numpy(rng.integers(0, len(x), p.batch))
        loss = _losses(net, xt[b], {k: v[b] for k, v in yt.items()})
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    layers = [
        (m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in net if isinstance(m, nn.Linear)
    ]
    return history.Detector(layers, net.mean.numpy(), net.std.numpy(), {"jpeg": 0.0, "earlier": 0.0})


def fit(p: DetectorParams, set_dirs: Sequence[Path]) -> history.Detector:
    """Synthesize, train and calibrate: the detector with its thresholds and the facts of its
    training in ``meta`` (params, photos, samples, calibration figures, seconds)."""
    t0 = time.perf_counter()
    torch.set_num_threads(1)  # a small MLP: a second thread only waits (60 ms a step instead of 7 on 2 busy cores)
    train_photos, held = split(set_dirs, p)
    x, y = synthesize(p, train_photos, p.samples, p.seed)
    t_data = time.perf_counter() - t0
    det = train(p, x, y)
    t_train = time.perf_counter() - t0 - t_data
    thresholds, figures = calibration.calibrate(det, held, p)
    det.thresholds = thresholds
    det.meta = {
        "params": asdict(p),
        "features": int(x.shape[1]),
        "train_photos": train_photos.summary(),
        "heldout_photos": held.summary(),
        "samples": int(len(x)),
        "calibration": figures,
        "seconds": {
            "synthesis": round(t_data, 1),
            "training": round(t_train, 1),
            "total": round(time.perf_counter() - t0, 1),
        },  # fmt: skip
        "torch": str(torch.__version__),
    }
    return det
