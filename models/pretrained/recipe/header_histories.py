"""Where deciding under a JPEG header loses gain, measured on the detector's held-out training
photos (never a test image), and how fine textures under a high-quality header fare.

    python -m models.pretrained.recipe.header_histories --ckpt models/pretrained/model.pt \\
        --set-dirs ../shared/datasets/train/BSD200 ../shared/datasets/train/T91 \\
            ../shared/datasets/train-extra/DIV2K11 ../shared/datasets/train-extra/Waterloo13 \\
        --params presets/full.yaml --json models/pretrained/provenance/header_histories.json

The held-out photos are those the detector beside ``--ckpt`` was calibrated on (its record's
clean sets, skipped sets and hold-out rule). Each goes, cut to 400-640 px a side, through JPEG
files of three kinds: a single JPEG (QF 20-98); a JPEG resized (x0.5-1.2, any filter) and
re-saved at QF 85-97; a JPEG shifted by 1-7 px and compressed again 10-40 higher; and, cut to
160-360 px (a small photo), through single and resized, re-saved ones again. For each file:
the gain of the decision (``Restorer.decide``, as ``restore`` decides), of the header's QF, and
of the best hand-picked QF (``scoring.hill_climb`` over ``evaluate.best_qf_grid``, as the
evaluate stage's real-world cases); where a file hides an earlier compression and its header
was kept, which of ``photo.decide``'s tests kept it. Then generated textures (grain, fine
stripes, 1/f noise) saved at QF 85-98: how often the header is overruled and how often
restoring makes them worse.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from pipeline import params
from pipeline.core import images
from pipeline.evaluation.scoring import hill_climb, psnr_or_cap
from pipeline.restoration import history, photo
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer
from pipeline.restoration.tiles import to_uint8
from pipeline.training import histories as H
from pipeline.training import samples as S

KINDS = ("single", "resized, re-saved", "shifted, recompressed")
PER_PHOTO = {"single": 6, "resized, re-saved": 6, "shifted, recompressed": 4}
SIDES = (400, 640)
# Small photos (a BSDS500 photo halved is 240x160): the same photos cut to this size, single and
# resized, re-saved files only; their rows' kind names the size.
SMALL_SIDES = (160, 360)
SMALL_PER_PHOTO = {"single": 6, "resized, re-saved": 6, "shifted, recompressed": 0}


def draw(kind: str, rng: np.random.Generator) -> H.History:
    """A history of ``kind`` (KINDS) ending in a JPEG file."""
    sub = "4:4:4" if rng.random() < 0.3 else "4:2:0"
    if kind == "single":
        qf = int(rng.choice([20, 30, 40, 50, 60, 70, 75, 80, 85, 88, 90, 92, 94, 95, 96, 98]))
        return H.History(None, qf2=qf, subsampling2=sub)
    q1 = int(rng.choice([10, 20, 30, 40, 50, 60, 70] if kind == "resized, re-saved" else [5, 10, 15, 20, 30, 40, 50]))
    if kind == "resized, re-saved":
        scale = float(rng.choice([0.5, 0.6, 0.75, 0.9, 1.0, 1.2]))
        h = H.History(q1, scale=scale, interp=str(rng.choice(list(H.INTERP))),
                      crop=(int(rng.integers(0, 8)), int(rng.integers(0, 8))),
                      qf2=int(rng.choice([85, 90, 92, 95, 95, 97])), subsampling2=sub)  # fmt: skip
    else:
        crop = (0, 0)
        while crop[0] % 8 == 0 and crop[1] % 8 == 0:
            crop = (int(rng.integers(0, 8)), int(rng.integers(0, 8)))
        h = H.History(q1, crop=crop, qf2=min(98, q1 + int(rng.choice([10, 20, 30, 40]))))
    return H.first_jpeg(h, "ijg", rng)


def measure(
    r: Restorer,
    paths: list[str],
    grid: tuple[int, ...],
    seed: int,
    per_photo: dict[str, int] = PER_PHOTO,
    sides: tuple[int, int] = SIDES,
    suffix: str = "",
) -> list[dict]:
    """One row per JPEG file made from the photos at ``paths`` (``per_photo`` files of each kind,
    about ``sides`` px a side; ``suffix`` follows the kind in the rows)."""
    rng = np.random.default_rng(seed)
    rows = []
    for path in paths:
        src = S.photo(path)
        for kind in KINDS:
            for _ in range(per_photo[kind]):
                h = draw(kind, rng)
                lq, ref, header = H.apply(h, H.cut(src, h, rng, sides))
                base = psnr_or_cap(ref, lq)

                def gain(d: photo.Decision, lq: np.ndarray = lq, ref: np.ndarray = ref, base: float = base) -> float:
                    return psnr_or_cap(ref, np.ascontiguousarray(to_uint8(r.restore(lq, d)))) - base

                d = r.decide(lq, header)
                hq = history.header_qf(header)
                fixed = r.replace(qf=float(grid[0])).decide(lq, header)
                label = H.labels(h)
                best_qf, best = hill_climb(
                    lambda q, f=fixed: gain(dataclasses.replace(f, qf=float(q))), grid, label["qf"]
                )
                at_header = d if d.source == "header" else photo.decide(r.engine.estimate, lq, header, None, None)
                row = {"kind": kind + suffix, "photo": Path(path).stem, "qf": h.qf, "scale": h.scale, "qf2": h.qf2,
                       "subsampling": h.subsampling2, "header_qf": hq, "label_qf": label["qf"],
                       "earlier": bool(label["earlier"]), "source": d.source, "qf_used": d.qf,
                       "gain": gain(d), "header_gain": gain(at_header) if at_header.source == "header" else None,
                       "best_qf": best_qf, "best_gain": max(best, 0.0)}  # fmt: skip
                if d.source == "header" and label["earlier"]:
                    reading = r.detector.read(lq, header)
                    row["qf_read"] = reading.qf_eff
                    row["kept_by"] = photo.earlier_kept_by(reading, hq, r.engine.estimate, lq, every=True)
                rows.append(row)
        print(f"{Path(path).name}: {len(rows)} files", flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for kind in dict.fromkeys(x["kind"] for x in rows):
        sel = [x for x in rows if x["kind"] == kind]
        gain, best = float(np.mean([x["gain"] for x in sel])), float(np.mean([x["best_gain"] for x in sel]))
        hdr = [x["header_gain"] for x in sel if x["header_gain"] is not None]
        kept = [x for x in sel if "kept_by" in x]
        s = {"n": len(sel), "gain": round(gain, 3), "best_gain": round(best, 3),
             "share": round(gain / best, 3) if best > 0 else None,
             "overruled": sum(x["source"] != "header" for x in sel),
             "header_gain": round(float(np.mean(hdr)), 3) if hdr else None,
             "worse_than_header": sum(x["gain"] < x["header_gain"] - 0.05 for x in sel if x["header_gain"] is not None),
             "earlier_kept": len(kept)}  # fmt: skip
        if kept:
            s["kept_by"] = {k: sum(k in x["kept_by"] for x in kept) for k in photo.EARLIER_KEPT_BY}
            s["kept_lost"] = round(float(np.mean([x["best_gain"] - x["gain"] for x in kept])), 3)
            s["kept_qf_read_minus_best"] = round(float(np.median([x["qf_read"] - x["best_qf"] for x in kept])), 1)
        out[kind] = s
    return out


SHIFT = 4  # the evaluate stage's double_shifted case: a JPEG at QF q, shifted 4 px, saved again at q + 20


def shifted_rows(r: Restorer, paths: list[str], qfs: tuple[int, ...] = (10, 30, 50)) -> list[dict]:
    """The real-world ``double_shifted`` history on each photo (its centre, at most 768x512): the
    gain of the single JPEG at QF q, and of the recompressed file as decided, at the header's QF
    and at the QF the detector reads (the ceiling of a perfect earlier-compression flag)."""
    rows = []
    for path in paths:
        gt = S.photo(path)
        h, w = gt.shape[:2]
        y, x = max(0, (h - 512) // 2), max(0, (w - 768) // 2)
        gt = np.ascontiguousarray(gt[y : y + 512, x : x + 768])
        for q in qfs:
            single = images.decode_image(images.encode_jpeg(gt, q))
            g_single = psnr_or_cap(gt, to_uint8(r.restore_photo(single.rgb, single.header).pixels))
            lq, ref = np.ascontiguousarray(single.rgb[SHIFT:, SHIFT:]), gt[SHIFT:, SHIFT:]
            dec = images.decode_image(images.encode_jpeg(lq, min(95, q + 20)))
            base = psnr_or_cap(ref, dec.rgb)

            def gain(d: photo.Decision, dec: images.Decoded = dec, ref: np.ndarray = ref, base: float = base) -> float:
                return psnr_or_cap(ref, to_uint8(r.restore(dec.rgb, d))) - base

            d = r.decide(dec.rgb, dec.header)
            rules = photo.decide(r.engine.estimate, dec.rgb, dec.header, None, None)
            qf_read = round(r.detector.read(dec.rgb, dec.header).qf_eff, 1)
            sub = dec.header.subsampling
            at_read = photo.Decision(
                qf_read, "detector", (0, 0), "", subsampling=sub, blend=photo.blend_for(qf_read, sub)
            )
            at_header = gain(rules) if rules.source == "header" else None
            rows.append({"photo": Path(path).stem, "qf": q, "single": g_single - psnr_or_cap(gt, single.rgb),
                         "decision": gain(d), "source": d.source, "header": at_header,
                         "at_qf_read": gain(at_read), "qf_read": qf_read})  # fmt: skip
    return rows


def shifted_summary(rows: list[dict]) -> dict:
    out = {}
    for q in dict.fromkeys(x["qf"] for x in rows):
        sel = [x for x in rows if x["qf"] == q]
        single = float(np.mean([x["single"] for x in sel]))

        def share(key: str, sel: list[dict] = sel, single: float = single) -> float | None:
            v = [x[key] for x in sel if x[key] is not None]
            return round(float(np.mean(v)) / single, 3) if v and len(v) == len(sel) else None

        out[str(q)] = {"n": len(sel), "single_gain": round(single, 3), "decision": share("decision"),
                       "header": share("header"), "at_qf_read": share("at_qf_read"),
                       "flagged": sum(x["source"] == "detector" for x in sel)}  # fmt: skip
    return out


def textures(side: int, seed: int) -> dict[str, np.ndarray]:
    """Generated scenes whose fine texture a restoration may take for artifacts."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    base = 90 + 80 * np.stack([yy, xx, 1 - yy], -1)
    out = {}
    for name, sigma in (("grain 12", 12.0), ("grain 25", 25.0)):
        noise = rng.normal(0, sigma, (side, side, 1 if seed % 2 else 3))
        out[name] = np.clip(base + noise + 0.5, 0, 255).astype(np.uint8)
    period = 3 + seed % 5
    v = 128 + 60 * np.sin(2 * np.pi * (xx * side + 0.3 * yy * side) / period)
    out["fine stripes"] = np.clip(np.stack([v, v * 0.8 + 20, 255 - v], -1), 0, 255).astype(np.uint8)
    f = np.fft.fftfreq(side)
    amp = 1 / np.maximum(np.hypot(*np.meshgrid(f, f)), 1 / side)
    planes = [np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random((side, side))))) for _ in range(3)]
    out["1/f noise"] = np.clip(np.stack([128 + 50 * z / z.std() for z in planes], -1), 0, 255).astype(np.uint8)
    return out


def texture_rows(r: Restorer, sides: tuple[int, ...] = (192, 512), seeds: int = 4) -> list[dict]:
    rows = []
    for side in sides:
        for seed in range(seeds):
            for name, gt in textures(side, seed).items():
                for q in (85, 90, 95, 98):
                    for sub in ("4:2:0", "4:4:4"):
                        dec = images.decode_image(images.encode_jpeg(gt, q, subsampling=sub))
                        d = r.decide(dec.rgb, dec.header)
                        g = psnr_or_cap(gt, to_uint8(r.restore(dec.rgb, d))) - psnr_or_cap(gt, dec.rgb)
                        rows.append({"texture": name, "side": side, "seed": seed, "qf": q, "subsampling": sub,
                                     "source": d.source, "qf_used": d.qf, "gain": g})  # fmt: skip
    return rows


def texture_summary(rows: list[dict]) -> dict:
    out = {}
    for name in dict.fromkeys(x["texture"] for x in rows):
        sel = [x for x in rows if x["texture"] == name]
        over = [x for x in sel if x["source"] != "header"]
        kept = [x for x in sel if x["source"] == "header"]
        out[name] = {"n": len(sel), "overruled": len(over),
                     "overruled_worse": sum(x["gain"] < -0.005 for x in over),
                     "overruled_worst": round(min((x["gain"] for x in over), default=0.0), 2),
                     "kept_worse": sum(x["gain"] < -0.005 for x in kept),
                     "kept_worst": round(min((x["gain"] for x in kept), default=0.0), 2)}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--set-dirs", type=Path, nargs="+", required=True, help="the training set folders")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--precision", choices=("f32", "bf16"), default="bf16")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args(argv)
    p = params.load(args.params)
    r = Restorer.load(args.ckpt, RestoreOptions.from_params(dataclasses.replace(p.evaluate, precision=args.precision)))
    if r.detector is None:
        ap.error(f"{args.ckpt}: no {history.FILE_NAME} beside it")
    rec = r.detector.meta.get("params", {})
    keys = ("clean_sets", "skip_sets", "not_clean", "holdout_every")
    dp = dataclasses.replace(p.detector, **{k: type(getattr(p.detector, k))(rec[k]) for k in keys if k in rec})
    _, held = S.split(args.set_dirs, dp)
    t = time.perf_counter()
    paths, grid = [path for _, path in held.sources], tuple(p.evaluate.best_qf_grid)
    rows = measure(r, paths, grid, args.seed)
    small = f", {SMALL_SIDES[0]}-{SMALL_SIDES[1]} px"
    rows += measure(r, paths, grid, args.seed + 1, SMALL_PER_PHOTO, SMALL_SIDES, small)
    shifted = shifted_rows(r, [path for _, path in held.sources])
    tex = texture_rows(r)
    result = {"checkpoint": str(args.ckpt), "engine": r.label, "photos": len(held.sources),
              "seconds": round(time.perf_counter() - t), "detector_sides": rec.get("sides"),
              "sides": list(SIDES), "small": {"sides": list(SMALL_SIDES), "suffix": small},
              "kinds": summary(rows),
              "double_shifted": shifted_summary(shifted), "textures": texture_summary(tex),
              "rows": rows, "double_shifted_rows": shifted, "texture_rows": tex}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=float) + "\n")
    tmp.replace(args.json)
    print(json.dumps({k: result[k] for k in ("kinds", "double_shifted", "textures")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
