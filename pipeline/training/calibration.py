"""Calibration on held-out training photos (never a test image): the threshold for "leave
unchanged", so that never-compressed variants stay unchanged ``clean_target`` of the time; the
threshold of the earlier-compression flag; the figures the checkpoint records.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np

from pipeline.params import DetectorParams
from pipeline.restoration import history
from pipeline.training import histories as H
from pipeline.training import samples as S

# The never-compressed variants the acceptance names (whole, crops, downscaled, upscaled, gamma), with
# the filters photo tools use; each also on two LIVE1-sized crops of a large photo.
VARIANTS = {
    "whole": H.History(None), "gamma 0.7": H.History(None, gamma=0.7), "gamma 1.4": H.History(None, gamma=1.4),
    "down 0.5 area": H.History(None, scale=0.5), "down 0.5 bilinear": H.History(None, scale=0.5, interp="bilinear"),
    "down 0.75 area": H.History(None, scale=0.75), "down 0.75 bicubic": H.History(None, scale=0.75, interp="bicubic"),
    "down 0.9 area": H.History(None, scale=0.9), "down 0.9 bilinear": H.History(None, scale=0.9, interp="bilinear"),
    "up 1.25 bilinear": H.History(None, scale=1.25, interp="bilinear"),
    "up 1.5 bicubic": H.History(None, scale=1.5, interp="bicubic"),
    "up 1.5 lanczos": H.History(None, scale=1.5, interp="lanczos"),
    "up 2 bicubic": H.History(None, scale=2.0, interp="bicubic"),
    "crop (3, 5)": H.History(None, crop=(3, 5)),
}  # fmt: skip
RANDOM_PER_PHOTO = 40  # random never-compressed histories (no second JPEG) per held-out clean photo
EARLIER_FALSE_MAX = 0.05  # share of single JPEGs whose header may be overruled (their QF read >= 10 lower too)


def _variants(args: tuple[str, int]) -> list[tuple[str, np.ndarray]]:
    """(kind, features) of one held-out clean photo's variants (worker side)."""
    path, seed = args
    rng = np.random.default_rng(seed)
    img = S.photo(path)
    bases = [("", img)]
    if max(img.shape[:2]) > 1200:  # DIV2K: also as photos of LIVE1's size
        for _ in range(2):
            y, x = int(rng.integers(0, img.shape[0] - 512)), int(rng.integers(0, img.shape[1] - 768))
            bases.append((" (crop)", np.ascontiguousarray(img[y : y + 512, x : x + 768])))
    out = [(kind + tag, history.features(H.apply(h, base)[0])) for tag, base in bases for kind, h in VARIANTS.items()]
    for _ in range(RANDOM_PER_PHOTO):
        h = replace(H.draw(rng, clean_share=1.0), qf2=None)
        out.append(("random", history.features(H.apply(h, H.cut(img, h, rng))[0])))
    return out


def calibrate(det: history.Detector, held: S.Photos, p: DetectorParams) -> tuple[dict[str, float], dict]:
    """Thresholds {"jpeg": logit, "earlier": logit} and the figures on held-out photos."""
    with ProcessPoolExecutor(p.workers, initializer=S.worker_init) as pool:
        rows = [
            r for rs in pool.map(_variants, [(path, p.seed + i) for i, (_, path) in enumerate(held.clean)]) for r in rs
        ]
    kinds = np.array([k for k, _ in rows])
    clean_logit = det.outputs(np.stack([f for _, f in rows]))[:, 0]
    # Held-out compressed (and clean) photos with random histories.
    x, y = S.held_out_samples(p, held)
    out = det.outputs(x)
    clean_rand = (y["jpeg"] == 0) & (y["header"] == 0)
    # Both the named variants and the random never-compressed histories stay unchanged clean_target of the time.
    thr = max(float(np.quantile(v, p.clean_target, method="higher")) for v in (clean_logit, out[clean_rand, 0]))
    unchanged = clean_logit <= thr
    by_kind = {str(k): round(float(unchanged[kinds == k].mean()), 4) for k in dict.fromkeys(kinds)}
    png = (y["header"] == 0) & (y["jpeg"] == 1)
    detected = {}
    for lo, hi in ((0, 20), (20, 40), (40, 60), (60, 80), (80, 101)):
        s = png & (y["qf"] >= lo) & (y["qf"] < hi)
        detected[f"qf {lo}-{min(hi, 100)}"] = {
            "n": int(s.sum()),
            "restored": round(float((out[s, 0] > thr).mean()), 3),
            "qf_abs_error": round(float(np.abs(out[s, 1] - y["qf"][s]).mean()), 2),
        }
    single, earlier = (y["header"] == 1) & (y["earlier"] == 0), (y["header"] == 1) & (y["earlier"] == 1)
    # photo.decide overrules a header only where the QF read is also EARLIER_MARGIN below the
    # header's: the threshold counts the single JPEGs both tests would overrule.
    gap = out[:, 1] <= x[:, -history.HEADER_FEATURES + 1] * 100.0 - H.EARLIER_MARGIN
    cand = np.sort(out[single & gap, 2])[::-1]
    allowed = int(EARLIER_FALSE_MAX * single.sum())
    thr_e = float(cand[allowed]) if len(cand) > allowed else float(out[:, 2].min()) - 1.0

    def overruled(s: np.ndarray) -> float:
        return float((gap[s] & (out[s, 2] > thr_e)).mean())

    figures = {
        "clean_variants": {"n": int(len(kinds)), "unchanged": round(float(unchanged.mean()), 4), "by_kind": by_kind},
        "clean_random_samples": {
            "n": int(clean_rand.sum()),
            "unchanged": round(float((out[clean_rand, 0] <= thr).mean()), 4),
        },
        "compressed_png": detected,
        "earlier": {"n": int(earlier.sum()), "found": round(overruled(earlier), 3),
                    "single_jpegs_overruled": round(overruled(single), 3),
                    "qf_abs_error": round(float(np.abs(out[earlier, 1] - y["qf"][earlier]).mean()), 2)},
    }  # fmt: skip
    return {"jpeg": thr, "earlier": thr_e}, figures
