"""How to restore a photo as users have it: one decision for the QF and the 8x8 grid (then the
``Restorer`` restores on that grid and projects onto what the JPEG allows), or leave a clean
photo alone.

``Restorer.decide`` calls it for every door (``restore``, the app, ``pipeline.test``, the
evaluate stage, the served model), so they all decide the same way. The order of evidence:

1. the user's QF;
2. the JPEG header's tables (a file's own grid is at (0, 0)), unless the pixels show an earlier,
   stronger compression on another grid (a cropped and re-saved photo): its
   lattice, or the blocking's grid off the origin, on which the lattice (fainter, but
   corroborated by the blocking) or the learned estimator reads a clearly lower quality;
3. a quantization lattice in the pixels at any of the 64 grid offsets (a re-saved or cropped
   PNG), the strongest compression winning;
4. the learned estimator, on the image shifted onto its blocking grid when there is one, but
   only on clear JPEG traces (``no_lattice_reason``): strong 8x8 blocking at one clear phase,
   or an estimate below any photo never compressed's;
5. otherwise the photo is returned unchanged: never compressed, or too faintly for restoring
   it to be worth the risk.

With the learned JPEG-history detector (``history.py``, shipped beside the model), steps 4 and 5
and the header's word are its: after the exact evidence (the user's QF, a lattice), it reads
whether a photo without a header was ever compressed and the QF to restore it at (resized or
edited after compression), and whether a JPEG file's header hides an earlier, stronger
compression. A header whose tables are not IJG's is restored at the IJG quality of the same
quantization noise. At high quality only part of the correction is kept (``blend_for``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from pipeline.core import jpeg
from pipeline.restoration import history
from pipeline.restoration.engines import EstimateFn
from pipeline.restoration.options import PROJECTIONS

# Calibrated on held-out training images, never on the test sets: models/pretrained/recipe/calibrate_forensics.py
# (figures in models/pretrained/provenance/calibration.json) and models/pretrained/recipe/calibrate_clean.py.
BLOCKING_MIN = 0.08  # blockiness (weaker axis) above which a blocking grid is believed: clean p95 0.082
# The learned estimator reads clean crops at 94 (median; 10th percentile 83) and aligned JPEGs of
# QF <= 85 at 48 (95th percentile 81): at or above this a photo without any lattice is left alone.
CLEAN_MIN_QF = 85.0
# Without a lattice, restoring needs evidence that photos never compressed do not show
# (models/pretrained/recipe/calibrate_clean.py on train-extra, whose photos carry no JPEG history, in five forms
# each: whole, a 768x512 crop, downscaled, upscaled by 1.25 to 2, gamma-edited; 107 in all):
# - 8x8 blocking whose phase stands out from the runner-up (jpeg.uniqueness): clean at most
#   0.016 (an upscale by 2 is "blocky" but not unique), JPEGs gamma-edited after decoding 0.08
#   and more (QF 10-50);
#   and strong (STRONG_BLOCKING): a JPEG of QF 80-95 edited since shows up to 0.21, and
#   restoring one gains next to nothing;
# - or an estimate below any clean photo's: clean photos read as low as 27.9 (upscaled).
# None of the 107 is restored (the rule before: 7). JPEGs of QF 10-90 that lost their lattice
# keep 0.26 dB of the 1.03 dB mean gain that restoring all of them would give: most photos
# resized after compression look like clean ones and are left alone. (A spectral test for blocks
# at another period, resized JPEGs, was dropped: clean photos upscaled by 1.25 score as high.)
UNIQUE_MIN = 0.04
ESTIMATE_ALONE_MAX = 20.0
RECOMPRESSED_MARGIN = 10.0  # the pixels' QF must be this much below the header's to overrule it
# A JPEG cropped then saved again: on its (shifted) blocking grid, the first compression's
# lattice scores 0.026 to 0.1 (10th percentiles, QF 10 to 50, re-saved at 95); single JPEGs
# score about -0.006 on whatever phase their blocking shows. Blocking off the origin happens on
# a quarter of single JPEGs at QF 50-90 (periodic textures), up to 0.18: the estimator alone
# overrules the header only above STRONG_BLOCKING (QF 10 re-saved: 0.68 and more).
FAINT_LATTICE_MIN = 0.02
STRONG_BLOCKING = 0.3
# The estimator reads at most this many pixels square from the centre: on a 12 MP photo 0.06 s
# instead of 1.0 s (one thread), and a photo's compression is the same all over.
ESTIMATE_CROP = 1024
# The detector overrules a header when the earlier compression it reads is this much below the
# header's QF, and at most EARLIER_MAX_QF: one read above it leaves little to gain over the
# header's QF and is read least surely (a QF 98 file over a QF 95 one was restored at 88: -4.9 dB).
EARLIER_MARGIN = 10.0
EARLIER_MAX_QF = 80.0
# ... and, under a header of QF 85 and up, only where the restoration network's own QF estimator
# agrees that the pixels show a compression below the header's: fine grain under a QF 92-98
# header (generated textures) was read as an earlier compression at QF 64-76 and restoring it
# there lost 0.3-7.4 dB; the estimator reads such photos at 97-99, while training photos
# compressed at QF 10-70, resized by 0.75-1 and re-saved at QF 90-95 read at most 92 (at 0.5,
# where blocks shrink to 4 px, a fifth to two thirds read above the margin and keep the header's
# QF: the cost of this guard). Under a lower header the estimator reads the header's own
# compression on its grid (QF 21-30 under a QF 30 one hiding a QF 10), so it cannot corroborate.
EARLIER_GUARD_FROM = 85.0
# Above QF 95 a header is kept whatever the pixels show: a QF 98 file is near lossless, and
# where it hides an earlier compression (LIVE1's flowers, whose reference is an old JPEG itself)
# restoring at that QF moved the photo 1.1 dB (4:2:0) to 6.0 dB (4:4:4) away from its reference.
EARLIER_HEADER_MAX = 95.0
EARLIER_ESTIMATE_MARGIN = 5.0
# Gentler restoring at high quality: the share of the correction kept at these QFs (linear in
# between; all of it below, none above), per chroma subsampling. Measured on 40 training crops
# (train-extra) and generated textures (fine grain, 1/f noise, stripes) at QF 90-98, as the mean
# gain per share 0 / 0.25 / 0.5 / 0.75 / 1: at 4:2:0 real photos gain most with all of it up to
# QF 96 (+1.31 dB at 94, +0.67 at 96) but textures lose with all of it from QF 94 (worst photo
# -0.46 dB) and gain most with half to three quarters (+0.04 at 96); nothing is left at 98
# (real -0.06, textures -0.01). At 4:4:4 (chroma projected exactly, little left for the network)
# 0.75 gains most at QF 90-92 (+0.53 against +0.42 for all of it), half at 94-96, and all of it
# loses from 96 (-0.14 dB at 96, -0.15 at 98). The 4:2:0 line gives up 0.07 dB of real photos'
# gain at 94 and 0.18 at 96 so that no texture is made worse. Photos without a header's
# subsampling take the 4:4:4 line, the more careful one.
BLEND_AT = {
    "4:2:0": ((92.0, 1.0), (94.0, 0.75), (96.0, 0.5), (98.0, 0.0)),
    "4:4:4": ((89.0, 1.0), (90.0, 0.75), (92.0, 0.75), (94.0, 0.5), (96.0, 0.5), (98.0, 0.0)),
}


@dataclass(frozen=True)
class Decision:
    """How a photo is restored. qf: the conditioning quality (None: left unchanged); source:
    "user", "header", "pixels", "estimated" or "none"; offset: the 8x8 grid the network is
    aligned to; tables/subsampling: the quantization the projection uses (None: unknown)."""

    qf: float | None
    source: str
    offset: tuple[int, int]
    message: str
    luma_table: np.ndarray | None = None
    chroma_table: np.ndarray | None = None
    subsampling: str = ""
    blend: float = 1.0
    reading: str = ""

    @property
    def unchanged(self) -> bool:
        return self.qf is None


CLEAN_MESSAGE = "no JPEG compression found: left unchanged; use --q to force"


def align(image: np.ndarray, offset: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad top/left by reflection so the grid at ``offset`` starts at (0, 0); returns the pads."""
    py, px = (8 - offset[0]) % 8, (8 - offset[1]) % 8
    if not (py or px):
        return image, (0, 0)
    mode = "reflect" if py < image.shape[0] and px < image.shape[1] else "edge"
    return np.pad(image, ((py, 0), (px, 0), (0, 0)), mode=mode), (py, px)


def centre_crop(image: np.ndarray, side: int = ESTIMATE_CROP) -> np.ndarray:
    """The centre of ``image``, at most ``side`` px square, cut on its 8x8 grid: read on a 12 MP
    photo, it costs what a 1 MP one does (a photo's compression is the same all over)."""
    h, w = image.shape[:2]
    y, x = max(0, (h - side) // 16 * 8), max(0, (w - side) // 16 * 8)
    return image[y : y + side, x : x + side]


def estimate_on_grid(estimate: EstimateFn, image: np.ndarray, offset: tuple[int, int]) -> float | None:
    """The learned QF estimate on the grid at ``offset``, from a centre crop of a large photo."""
    return estimate(centre_crop(align(image, offset)[0]))


def _grid_text(offset: tuple[int, int]) -> str:
    return "" if offset == (0, 0) else f" at grid offset {offset}"


def _shifted_grid(ev: jpeg.GridEvidence) -> tuple[int, int] | None:
    """The blocking's grid when it is off the origin and clear: a JPEG cropped, then saved again.
    (A second, fainter grid under the header's, left by a compression before a shift, is too
    weak to tell from a single JPEG's noise on photo-sized images: measured on training crops.)"""
    return ev.phase if ev.phase != (0, 0) and min(ev.strengths) >= BLOCKING_MIN else None


def blend_for(qf: float, subsampling: str = "") -> float:
    """Share of the correction kept when restoring at ``qf`` with chroma ``subsampling``."""
    points = BLEND_AT["4:2:0" if subsampling == "4:2:0" else "4:4:4"]
    return float(np.interp(qf, [q for q, _ in points], [b for _, b in points]))


def _gently(d: Decision, reading: str = "") -> Decision:
    """``d`` with the share of the correction its QF keeps, said in its message, and ``reading``."""
    blend = 1.0 if d.qf is None or d.source == "user" else blend_for(d.qf, d.subsampling)
    message = d.message if blend >= 1 else f"{d.message}; {blend:.0%} of the correction (high quality)"
    return dataclasses.replace(d, blend=blend, message=message, reading=reading)


def decide(
    estimate: EstimateFn | None,
    image: np.ndarray,
    header: jpeg.Header | None = None,
    user_qf: float | None = None,
    detector: history.Detector | None = None,
) -> Decision:
    """The QF, grid and share of the correction to restore ``image`` (RGB uint8) with;
    ``estimate``: the learned QF estimator (``Engine.estimate``; None: decide from exact
    evidence only); ``header``: the file's JPEG header (None for a PNG, or to decide from the
    pixels alone: blind mode); ``detector``: the JPEG-history detector (None: the rules alone)."""
    rules = decide_by_rules(estimate, image, header, user_qf)
    if detector is None or rules.source in ("user", "pixels"):  # the exact evidence decides alone
        return _gently(rules)
    reading = detector.read(image, header)
    if header is not None:
        hq = history.header_qf(header)
        if rules.source == "estimated":  # strong blocking on a shifted grid under the header: kept
            return _gently(rules, reading.text)
        if not earlier_kept_by(reading, hq, estimate, image):
            q = round(reading.qf_eff, 1)
            d = Decision(q, "detector", (0, 0), f"{reading.text}; header says {hq:g}")
            return _gently(dataclasses.replace(d, subsampling=header.subsampling), reading.text)
        exact = "" if header.exact else " (tables not IJG: the IJG quality of the same noise)"
        d = dataclasses.replace(rules, qf=hq, message=f"QF {hq:g} from the JPEG header{exact}")
        return _gently(d, reading.text)
    if not reading.jpeg:
        return Decision(None, "none", (0, 0), CLEAN_MESSAGE, reading=reading.text)
    offset = rules.offset if rules.source == "estimated" else blocking_grid(image)
    q = round(reading.qf_eff, 1)
    return _gently(Decision(q, "detector", offset, f"{reading.text}{_grid_text(offset)}"), reading.text)


EARLIER_KEPT_BY = ("flag below threshold", "header above 95", "QF read above the limit", "estimator disagrees")


def earlier_kept_by(
    reading: history.Reading, hq: float, estimate: EstimateFn | None, image: np.ndarray, every: bool = False
) -> list[str]:
    """Which of the tests (EARLIER_KEPT_BY) keep a JPEG file's header QF ``hq`` over the earlier
    compression the detector's ``reading`` shows ([]: the detector overrules the header). In
    order, stopping at the first that fails unless ``every``: the estimator, the costly test,
    runs last and only when the others pass."""
    tests = (
        lambda: reading.earlier,
        lambda: hq <= EARLIER_HEADER_MAX,
        lambda: reading.qf_eff <= min(hq - EARLIER_MARGIN, EARLIER_MAX_QF),
        lambda: hq < EARLIER_GUARD_FROM or _estimate_agrees(estimate, image, hq),
    )
    failed = []
    for name, passes in zip(EARLIER_KEPT_BY, tests):
        if not passes():
            failed.append(name)
            if not every:
                break
    return failed


def _estimate_agrees(estimate: EstimateFn | None, image: np.ndarray, header_qf: float) -> bool:
    """Whether the learned estimator, on the file's grid, reads the photo at least
    EARLIER_ESTIMATE_MARGIN below its header's QF."""
    est = None if estimate is None else estimate_on_grid(estimate, image, (0, 0))
    return est is not None and est <= header_qf - EARLIER_ESTIMATE_MARGIN


def blocking_grid(image: np.ndarray) -> tuple[int, int]:
    """The 8x8 grid of a photo's blocking (``estimation_grid``), read on its centre crop."""
    return estimation_grid(jpeg.find_grid(np.ascontiguousarray(centre_crop(image))))


def decide_by_rules(
    estimate: EstimateFn | None, image: np.ndarray, header: jpeg.Header | None = None, user_qf: float | None = None
) -> Decision:
    """``decide`` without the detector: the exact evidence, then the thresholds of steps 4-5."""
    ev = jpeg.find_grid(image)
    if user_qf is not None:
        offset = ev.offset if ev.lattice_qf is not None or ev.blocking >= BLOCKING_MIN else (0, 0)
        return Decision(float(user_qf), "user", offset, f"QF {user_qf:g}{_grid_text(offset)} set by the user")
    if header is not None:
        earlier = [(off, q) for off, q, _ in ev.lattices if off != (0, 0) and q <= header.qf - RECOMPRESSED_MARGIN]
        if earlier:
            off, q = min(earlier, key=lambda e: e[1])
            luma, _ = jpeg.ijg_tables(q)
            return Decision(
                float(q),
                "pixels",
                off,
                f"QF {q}{_grid_text(off)} from pixels; header says {header.qf} (re-saved)",
                luma,
            )
        off = _shifted_grid(ev)  # the blocking is off the header's grid: compressed before a crop
        if off is not None:
            scores = jpeg.lattice_scores(jpeg.luma(image), off)
            q = int(np.argmax(scores)) + 1
            if scores[q - 1] >= FAINT_LATTICE_MIN and q <= header.qf - RECOMPRESSED_MARGIN:
                luma, _ = jpeg.ijg_tables(q)  # the blocking corroborates a fainter lattice
                return Decision(
                    float(q),
                    "pixels",
                    off,
                    f"QF {q}{_grid_text(off)} from pixels; header says {header.qf} (re-saved)",
                    luma,
                )
            strong = min(ev.strengths) >= STRONG_BLOCKING
            est = estimate_on_grid(estimate, image, off) if estimate is not None and strong else None
            if est is not None and est <= header.qf - RECOMPRESSED_MARGIN:
                return Decision(
                    est,
                    "estimated",
                    off,
                    f"QF {est:.0f}{_grid_text(off)} estimated on a shifted "
                    f"blocking grid; header says {header.qf} (recompressed)",
                )
        exact = "" if header.exact else " (tables not IJG: nearest quality)"
        return Decision(
            float(header.qf),
            "header",
            (0, 0),
            f"QF {header.qf} from the JPEG header{exact}",
            header.luma,
            header.chroma,
            header.subsampling,
        )
    ev = search_all_offsets(image, ev)
    if ev.lattice_qf is not None:
        luma, _ = jpeg.ijg_tables(ev.lattice_qf)
        return Decision(
            float(ev.lattice_qf),
            "pixels",
            ev.offset,
            f"QF {ev.lattice_qf}{_grid_text(ev.offset)} from pixels (quantization lattice)",
            luma,
        )
    if estimate is None:
        return Decision(None, "none", (0, 0), CLEAN_MESSAGE)
    # No lattice: restored only on clear JPEG traces (see no_lattice_reason), at the learned
    # estimator's QF, on the blocking grid when there is one.
    offset = estimation_grid(ev)
    q = estimate_on_grid(estimate, image, offset)
    why = None if q is None else no_lattice_reason(ev.blocking, ev.unique, q)
    if why is None:
        return Decision(None, "none", (0, 0), CLEAN_MESSAGE)
    return Decision(q, "estimated", offset, f"QF {q:.0f}{_grid_text(offset)} estimated ({why})")


def search_all_offsets(image: np.ndarray, ev: jpeg.GridEvidence) -> jpeg.GridEvidence:
    """``ev`` (``jpeg.find_grid``), or, when it shows neither a lattice nor blocking, the search
    over all 64 grid offsets: a faint high-quality JPEG's lattice can be anywhere."""
    return jpeg.find_grid(image, candidates=8) if ev.lattice_qf is None and ev.blocking < BLOCKING_MIN else ev


def estimation_grid(ev: jpeg.GridEvidence) -> tuple[int, int]:
    """The grid the estimator reads a photo without a lattice on: its blocking's, when clear."""
    return ev.offset if ev.blocking >= BLOCKING_MIN and ev.unique >= UNIQUE_MIN else (0, 0)


def no_lattice_reason(blocking: float, unique: float, estimate: float) -> str | None:
    """Why a photo without a quantization lattice is restored, or None: leave it unchanged.

    blocking/unique: ``jpeg.find_grid``'s blockiness and its ``uniqueness``; estimate: the
    learned estimator's QF. Each branch needs evidence that photos never compressed do not show
    (models/pretrained/recipe/calibrate_clean.py; figures in models/pretrained/provenance/calibrate_clean.json).
    """
    if estimate >= CLEAN_MIN_QF:
        return None
    if blocking >= STRONG_BLOCKING and unique >= UNIQUE_MIN:
        return "blocking, no lattice"
    if estimate <= ESTIMATE_ALONE_MAX:
        return "no grid found"
    return None


def projection_planes(projection: str, decision: Decision) -> tuple[bool, bool]:
    """(luma, chroma): which planes the quantization-constraint projection clips.

    "auto" (the default) applies only the exact projections: luma whenever the tables and grid
    are known, chroma when it was not subsampled (4:4:4). "on" also projects 4:2:0 chroma, an
    approximation (the decoder's upsampling is not inverted) that lowered LIVE1's mean PSNR at
    QF 90 and 95 (models/pretrained/MODEL_CARD.md); "off" never projects.
    """
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {', '.join(PROJECTIONS)}, got {projection!r}")
    luma = projection != "off" and decision.luma_table is not None
    chroma = luma and decision.chroma_table is not None and (projection == "on" or decision.subsampling == "4:4:4")
    return luma, chroma
