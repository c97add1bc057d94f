"""The model card's section on the JPEG-history detector (models/pretrained/detector.npz), written
from the measured files only (``model_card.py`` calls ``section``):

- ``provenance/detector_training.json``: the detector's own record (params, photos, calibration,
  seconds, thresholds, the command that trained it);
- ``provenance/real_world.json``: ``python -m models.pretrained.recipe.realworld_eval`` with the
  detector; ``provenance/real_world_rules.json``: the same cases before it (the rules alone);
- ``provenance/header_histories.json``: ``python -m models.pretrained.recipe.header_histories``
  (held-out training photos under a JPEG header, and generated textures);
- ``benchmarks/results/bench_detector.json``: ``python -m benchmarks.bench_detector``.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.restoration import photo

HERE = Path("models/pretrained")
PROV = HERE / "provenance"
BENCH = Path("benchmarks/results/bench_detector.json")
RESIZED = ("resized", "resized_050", "resized_090", "resized_050_jpeg95", "resized_075_jpeg95", "resized_090_jpeg95")
SHIFTED = ("double_shifted", "double_shifted_90")
TABLES = ("tables_camera", "tables_mozjpeg", "tables_split", "tables_flat")
SAME = ("aligned", "resaved_png", "cropped_png", "cropped_resaved")
CLEAN = ("never_compressed", "never_compressed_down", "never_compressed_up")


# The model card's Limits bullets on deciding (measured: the acceptance table, the tests, and
# provenance/header_histories.json, whose figures ``limits`` fills in).
def limits(hh: dict | None = None) -> str:
    """The Limits bullets; with ``header_histories.json`` (``hh``), its figures."""
    rs, sh, tex = {}, {}, {}
    if hh:
        rs, sh = hh["kinds"]["resized, re-saved"], hh["double_shifted"].get("10", {})
        tex = hh["textures"]
    resaved = ""
    if rs.get("kept_by"):
        k = rs["kept_by"]
        resaved = f"""
  On held-out training photos (the "Under a header" table) the decision gets {rs["share"]:.0%} of
  the best hand-picked QF's gain ({rs["gain"]:+.2f} against {rs["best_gain"]:+.2f} dB; the header's QF alone
  {rs["header_gain"]:+.2f}). Of the {rs["earlier_kept"]} files that keep the header's QF over an earlier compression, the
  flag is below its threshold for {k["flag below threshold"]}, the QF read is above the limit for {k["QF read above the limit"]} (under
  a header the detector reads a median {rs["kept_qf_read_minus_best"]:.0f} above the best QF for them), the estimator
  disagrees for {k["estimator disagrees"]} and the header is above 95 for {k["header above 95"]}; they get {rs["kept_lost"]:.2f} dB less than at
  the best QF. The detector's QF reading under a header, not a threshold, is what to improve."""
    shifted = ""
    if sh:
        shifted = f"""
  On held-out training photos {sh["flagged"]} of {sh["n"]} are flagged and the decision gets {sh["decision"]:.0%} of the single
  JPEG's gain; with every file restored at the QF the detector reads, {sh["at_qf_read"]:.0%}: the network
  restores a JPEG compressed twice on two grids less well than a single one, so a better flag
  alone cannot give much more."""
    texture = """
- Generated fine grain saved as a PNG (no header) is read as a JPEG resized after compression and
  restored; the calibration holds for photos (held-out training photos), not for
  synthetic noise textures."""
    if tex:
        st, gr, g12, pink = tex["fine stripes"], tex["grain 25"], tex["grain 12"], tex["1/f noise"]
        texture = f"""
- Fine texture of the scene itself under a high-quality header (the texture table): generated
  fine colour stripes (period 3-7 px) and heavy grain (sigma 25) at QF 85-98 are read as an
  earlier compression in {st["overruled"]} and {gr["overruled"]} of {st["n"]} files and restored at a low QF, down to
  {st["overruled_worst"]:+.1f} dB (stripes at 4:4:4: their chroma is smoothed) and {gr["overruled_worst"]:+.1f} dB. Kept at the header's
  QF, with the gentler correction from QF 90, the network itself still makes {st["kept_worse"]} stripe files
  worse (down to {st["kept_worst"]:+.2f} dB) and {pink["kept_worse"]} of 1/f noise (down to {pink["kept_worst"]:+.2f} dB). Moderate
  grain (sigma 12) is overruled {g12["overruled"]} times and never made worse. Generated fine grain saved as a
  PNG (no header) is read as a JPEG resized after compression and restored: the calibration
  holds for photos (held-out training photos), not for synthetic textures."""
    small = ""
    if hh and "small" in hh:
        sk, rk = (k + hh["small"]["suffix"] for k in ("single", "resized, re-saved"))
        ss, size, full, trained = (
            hh["kinds"][sk],
            _px(hh["small"]["sides"]),
            _px(hh["sides"]),
            _px(hh["detector_sides"]),
        )
        single, rs = hh["kinds"]["single"], hh["kinds"]["resized, re-saved"]
        losses = [x["gain"] - x["header_gain"] for x in hh["rows"] if x["kind"] == sk and x["source"] != "header"]
        worse = ""
        if losses and max(losses) < -0.005:
            worse = f" (each worse than at the header's QF, by {-max(losses):.2f}-{-min(losses):.2f} dB)"
        elif losses:
            worse = f" (the worst {min(losses):+.2f} dB against the header's QF)"
        small = f"""
- Small photos ({size} a side; the detector trained on {trained}): under a header it overrules
  {ss["overruled"]} of {ss["n"]} held-out single JPEGs{worse},
  against {single["overruled"]} of {single["n"]} at {full}; the decision gets {ss["share"]:.0%} of the best QF's gain on
  single JPEGs and {hh["kinds"][rk]["share"]:.0%} on resized, re-saved ones, against {single["share"]:.0%} and {rs["share"]:.0%} at {full}: fewer
  blocks to read make its features noisier."""
    return f"""- Photos resized after compression and then re-saved as a high-quality JPEG are the hardest
  history: under a QF 95 header the detector flags a milder earlier compression (QF 50) or one
  whose blocks shrank to 4 px (x0.5) less often, and above QF 85 the network's estimator must
  corroborate it. Those photos keep the header's QF and get about half of the best hand-picked
  QF's gain (the acceptance table). Loosening either test overruled single JPEGs on training
  photos: one QF 95 4:4:4 photo lost 5.5 dB, QF 85-90 ones 0.3-0.8 dB.{resaved}
- A JPEG shifted by a few pixels and compressed again at a higher quality: at QF 10 under a QF 30
  header, the earlier compression of about a third of the photos is read below the calibrated
  flag, and those are restored at the header's QF (about 80% of the single JPEG's gain).{shifted}
- Below a QF 85 header the detector alone decides whether an earlier compression shows: it
  overruled 1 of 50 single BSDS500 JPEGs at QF 50 (about 5% of single training JPEGs, at all QFs).
- 7 of LIVE1's 29 references carry an old JPEG's traces of their own (2 block at grid phase
  (1, 1); the detector reads 5 more as JPEGs resized since): it reads them as resized
  JPEGs at QF 62-88 and restores them, so LIVE1's never-compressed case is not left identical
  for them (the acceptance table's "never compressed" and "no case negative" lines, whose
  figures are those photos scored against themselves). A threshold chosen to leave them alone
  would be chosen on a test set.{small}{texture}"""


def header_histories() -> dict | None:
    """``provenance/header_histories.json``, or None before it was measured."""
    path = PROV / "header_histories.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _cases(rw: dict) -> dict[tuple[str, str, int | None], dict]:
    return {(s, c["case"], c["qf"]): c for s, v in rw["real_world"].items() for c in v["cases"]}


def _photos(d: dict) -> str:
    """{"clean": {set: n}, "sources": {set: n}} as words."""

    def sets(x: dict) -> str:
        return ", ".join(f"{k} {n}" for k, n in x.items())

    return (
        f"{sum(d['clean'].values())} never compressed ({sets(d['clean'])}), {sum(d['sources'].values())} "
        f"sources of compressed samples ({sets(d['sources'])})"
    )


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def rows(rw: dict, before: dict) -> list[str]:
    """One row per set, case and QF: the gain before the detector (where measured), now, the
    best hand-picked QF's and the share of it."""
    old, out = _cases(before), []
    for (s, case, qf), c in _cases(rw).items():
        b = old.get((s, case, qf))
        best = "-" if c.get("best_qf") is None else f"{c['best_gain']:+.2f} at {c['best_qf']}"
        sources = ", ".join(f"{k} {n}" for k, n in c["sources"].items())
        was = "-" if b is None else f"{b['gain']:+.2f}"
        out.append(
            f"| {s} | {c['title']} | {qf if qf is not None else '-'} | {was} | {c['gain']:+.2f} | {best} "
            f"| {_pct(c.get('share'))} | {c['unchanged']:.0%} | {sources} |"
        )
    return out


def acceptance(rw: dict, before: dict, cal: dict, bench: dict | None, seconds: dict) -> list[str]:
    """The issue's acceptance lines with the measured figure and whether it is met."""
    cases, old = _cases(rw), _cases(before)

    def shares(names: tuple[str, ...]) -> list[tuple[str, float | None]]:
        return [(f"{s} {c} QF {q}", v.get("share")) for (s, c, q), v in cases.items() if c in names]

    def line(text: str, figure: str, met: bool) -> str:
        return f"| {text} | {figure} | {'met' if met else 'NOT met'} |"

    out = []
    resized = shares(RESIZED)
    low = [(k, v) for k, v in resized if v is None or v < 0.6]
    out.append(line("resized cases: at least 60% of the best hand-picked QF's gain",
                    f"lowest {min(v or 0 for _, v in resized):.0%}; below 60%: "
                    + (", ".join(f"{k} ({_pct(v)})" for k, v in low) or "none"), not low))  # fmt: skip
    single = []
    for (s, c, q), v in cases.items():
        if c in SHIFTED and (s, "aligned", q) in cases:
            single.append((f"{s} {c} QF {q}", v["gain"] / cases[s, "aligned", q]["gain"]))
    low = [(k, v) for k, v in single if v < 0.85]
    out.append(line("recompressed with a shifted grid: at least 85% of the single JPEG's gain",
                    f"lowest {min(v for _, v in single):.0%}; below 85%: "
                    + (", ".join(f"{k} ({v:.0%})" for k, v in low) or "none"), not low))  # fmt: skip
    tables = shares(TABLES)
    low = [(k, v) for k, v in tables if v is None or v < 0.9]
    out.append(line("other encoders' tables: at least 90% of the best hand-picked QF's gain",
                    f"lowest {min(v or 0 for _, v in tables):.0%}; below 90%: "
                    + (", ".join(f"{k} ({_pct(v)})" for k, v in low) or "none"), not low))  # fmt: skip
    clean = [(f"{s} {c}", v["unchanged"]) for (s, c, _), v in cases.items() if c in CLEAN and s == "LIVE1"]
    variants = cal["clean_variants"]["unchanged"]
    random = cal["clean_random_samples"]["unchanged"]
    out.append(line("never compressed: every LIVE1 reference identical; training variants at least 99.5%",
                    ", ".join(f"{k} {v:.0%}" for k, v in clean) + f"; held-out training variants {variants:.2%} "
                    f"(n {cal['clean_variants']['n']}), random never-compressed histories {random:.2%} "
                    f"(n {cal['clean_random_samples']['n']})",
                    all(v == 1 for _, v in clean) and min(variants, random) >= 0.995))  # fmt: skip
    negative = [(f"{s} {c} QF {q}", v["gain"]) for (s, c, q), v in cases.items() if v["gain"] < 0]
    out.append(line("no case negative at any QF, 90-98 included",
                    ", ".join(f"{k} ({g:+.3f})" for k, g in negative) or "none negative", not negative))  # fmt: skip
    diffs = [(f"{s} {c} QF {q}", v["gain"] - old[s, c, q]["gain"]) for (s, c, q), v in cases.items()
             if c in SAME and (s, c, q) in old]  # fmt: skip
    worst = max(diffs, key=lambda d: abs(d[1]))
    out.append(line("aligned, re-saved and cropped cases within 0.01 dB of before",
                    f"{len(diffs)} compared, largest change {worst[1]:+.3f} dB ({worst[0]})", abs(worst[1]) <= 0.01))  # fmt: skip
    if bench:
        r = bench["rows"].get("12 MP (4000x3000)")
        if r:
            added = r["detector_s"] - r["rules_s"]
            out.append(line("the detector adds at most 0.15 s to a 12 MP photo",
                            f"{added:+.3f} s (reading alone {r['reading_s']:.3f} s)", added <= 0.15))  # fmt: skip
    out.append(line("its training stage in at most 30 min on 2 cores",
                    f"{seconds['total']:.0f} s ({seconds['total'] / 60:.1f} min)", seconds["total"] <= 1800))  # fmt: skip
    return out


def _px(sides: list[int]) -> str:
    """[400, 640] -> "400-640 px"."""
    return f"{sides[0]}-{sides[1]} px"


def _f(v: float | None, fmt: str = "+.2f") -> str:
    return "-" if v is None else format(v, fmt)


def under_header(hh: dict) -> str:
    """The paragraph and tables of ``header_histories.json``: where deciding under a header loses
    gain on held-out training photos, and generated textures under a high-quality header."""
    kinds = "\n".join(
        f"| {k} | {v['n']} | {_f(v['gain'])} | {_f(v['header_gain'])} | {_f(v['best_gain'])} | {_pct(v['share'])} "
        f"| {v['overruled']} | {v['worse_than_header']} |"
        for k, v in hh["kinds"].items()
    )
    kept = []
    for k, v in hh["kinds"].items():
        if v.get("earlier_kept"):
            why = ", ".join(f"{reason} {n}" for reason, n in v["kept_by"].items() if n)
            kept.append(
                f"- {k}: {v['earlier_kept']} files hide an earlier compression but keep the header's QF ({why}; a file "
                f"may fail several tests); they get {v['kept_lost']:.2f} dB less than at the best QF, and the QF the "
                f"detector reads for them is a median {v['kept_qf_read_minus_best']:+.0f} from the best one."
            )
    shifted = "\n".join(
        f"| {q} | {v['n']} | {v['single_gain']:+.2f} | {_pct(v['decision'])} | {_pct(v['header'])} "
        f"| {_pct(v['at_qf_read'])} | {v['flagged']} |"
        for q, v in hh.get("double_shifted", {}).items()
    )
    tex = "\n".join(
        f"| {k} | {v['n']} | {v['overruled']} | {v['overruled_worse']} | {_f(v['overruled_worst'])} "
        f"| {v['kept_worse']} | {_f(v['kept_worst'])} |"
        for k, v in hh["textures"].items()
    )
    return f"""**Under a header: where the gain is lost.** `python -m models.pretrained.recipe.header_histories
--ckpt models/pretrained/model.pt --set-dirs <the training sets> --params presets/full.yaml --json
models/pretrained/provenance/header_histories.json` ({hh["engine"]}, {hh["seconds"]} s): the detector's
{hh["photos"]} held-out training photos (never a test image), each cut to {_px(hh["sides"])} a side and saved
as 6 single JPEGs (QF 20-98), 6 JPEGs resized by 0.5-1.2 and re-saved at QF 85-97, and 4 JPEGs
shifted by 1-7 px and compressed again 10-40 higher (30% of the files 4:4:4); then cut to {_px(hh["small"]["sides"])}
(a small photo: BSDS500's 481x321 halved is 240x160), as 6 single and 6 resized, re-saved JPEGs
again (the rows that name the size). Mean gains in dB; "best": the best hand-picked QF
(`evaluate.best_qf_grid`, climbed from the QF the history calls for), per file.

| file | files | decision | header's QF | best | share | header overruled | worse than the header |
|---|---|---|---|---|---|---|---|
{kinds}

{chr(10).join(kept)}

The real-world case "JPEG, shifted 4 px, JPEG again at QF + 20" on the same photos (their centre,
at most 768x512), as shares of the single JPEG's gain: as decided, at the header's QF, and with
every file restored at the QF the detector reads (the most a perfect earlier-compression flag
could give with this network):

| first QF | photos | single JPEG's gain | decision | header's QF | at the QF read | flagged |
|---|---|---|---|---|---|---|
{shifted}

Generated textures saved as JPEGs at QF 85, 90, 95 and 98 (4:2:0 and 4:4:4; 192 and 512 px): how
often the detector overrules the header, and how often restoring makes them worse (gain below
-0.005 dB), overruled or at the header's own QF:

| texture | files | overruled | worse | worst | worse at the header's QF | worst |
|---|---|---|---|---|---|---|
{tex}
"""


def section() -> str:
    rec = json.loads((PROV / "detector_training.json").read_text())
    rw = json.loads((PROV / "real_world.json").read_text())
    before = json.loads((PROV / "real_world_rules.json").read_text())
    bench = json.loads(BENCH.read_text()) if BENCH.is_file() else None
    hh = header_histories()
    header_part = under_header(hh) if hh else ""
    cal, p, sec = rec["calibration"], rec["params"], rec["seconds"]
    png = "\n".join(
        f"| {band} | {v['n']} | {v['restored']:.1%} | {v['qf_abs_error']:.1f} |"
        for band, v in cal["compressed_png"].items()
    )
    bench_line = ""
    if bench:
        bench_line = "\n".join(
            f"| {name} | {r['reading_s']:.3f} | {r['rules_s']:.3f} | {r['detector_s']:.3f} |"
            for name, r in bench["rows"].items()
        )
        s = bench["stamp"]
        bench_line = (
            f"`python -m benchmarks.bench_detector` ({s['cpu']}, {s['cores']} cores, load {s['load_average'][0]}, "
            f"commit {s['commit']}), seconds, median of runs:\n\n| photo | reading | decision, rules alone | "
            f"decision, with the detector |\n|---|---|---|---|\n{bench_line}\n"
        )
    return f"""## The JPEG-history detector (models/pretrained/detector.npz)

**What it reads.** For any photo: the probability that it was ever JPEG-compressed (enough to
show), the QF to restore it at (a resized, gamma-edited or recompressed photo has no exact QF:
the QF at which restoring gains most on training photos), and for a JPEG file whether an
earlier, stronger compression shows through its header's. `pipeline/restoration/photo.py`
asks it after the exact evidence (the user's QF, a quantization lattice); `-v` prints its
reading. A small MLP ({p["hidden"]}-{p["hidden"] // 2} hidden units) over {rec["features"]} hand-made
forensic features (`pipeline/restoration/forensics.py`: block periods from 0.4x to 1.7x the
8x8 grid in the step profiles of the photo's centre, block-DCT statistics on up to 4 crops, on
the blocking's grid, the file's grid and the grid the resize read implies; the header's tables
as the IJG quality of the same noise), run in NumPy. Trained by the `train_detector` stage
(`pipeline/training/detector.py`) on the CPU in {sec["total"]:.0f} s ({rec["samples"]} samples,
{p["steps"]} steps, {p["workers"]} processes on a busy 2-core machine).

**Data.** Training photos only: `../shared/datasets/train` (BSD200; T91 is left out: its photos
carry JPEG histories of their own, of unknown quality) and `train-extra` (DIV2K11, Waterloo13,
never compressed, less 4 DIV2K photos that show the block period of a JPEG resized after
decoding). Training: {_photos(rec["train_photos"])}; held out for calibration:
{_photos(rec["heldout_photos"])}.
The command: `{rec["command"]}`.

**Histories.** A JPEG at QF 5-95 (4:2:0 and 4:4:4; IJG tables for 60%, else a camera's scaled
IJG tables, mozjpeg's, flat tables, or luma and chroma at different qualities), then any of: a
crop at any offset, a resize by 0.4-1.6 (area, bilinear, bicubic, Lanczos), gamma, contrast and
saturation edits, sharpening, and a second JPEG at a higher or lower QF (or a JPEG cut off its
grid and compressed again); and never-compressed photos through the same edits. The QF learned
for a history is the first compression's IJG-equivalent quality, its noise scaled by the
resize and the edits and added to a second JPEG's.

**Calibration** (held-out training photos). The threshold for "leave unchanged" is set so that
never-compressed variants stay identical at least {p["clean_target"]:.1%} of the time:
{cal["clean_variants"]["unchanged"]:.2%} of {cal["clean_variants"]["n"]} named variants (whole, crops, gamma
0.7/1.4, down 0.5-0.9 and up 1.25-2 with four filters) and {cal["clean_random_samples"]["unchanged"]:.2%} of
{cal["clean_random_samples"]["n"]} random never-compressed histories. Held-out compressed photos saved as PNG,
restored (not left unchanged), and the mean error of the QF read:

| first QF | photos | restored | QF error |
|---|---|---|---|
{png}

An earlier compression under a header is flagged for {cal["earlier"]["found"]:.1%} of {cal["earlier"]["n"]} held-out
recompressed photos, at the cost of {cal["earlier"]["single_jpegs_overruled"]:.1%} of single JPEGs (before the
estimator's corroboration below, which only lowers it). It overrules the header only when the QF
read is at least {photo.EARLIER_MARGIN:.0f} below the header's and at most {photo.EARLIER_MAX_QF:.0f}, and, under a header of
QF {photo.EARLIER_GUARD_FROM:.0f} and up, when the restoration network's own QF estimator also reads the photo at
least {photo.EARLIER_ESTIMATE_MARGIN:.0f} below the header: fine grain under a QF 92-98 header (generated textures)
was otherwise read as an earlier QF 64-76 compression and lost up to 7.4 dB. At QF 90 and up only
part of the correction is kept (`photo.BLEND_AT`), so that no generated texture is made worse
(`tests/test_history.py`).

**Acceptance** (the real-world table below; LIVE1 and every 4th BSDS500 test image):

| line | measured | |
|---|---|---|
{chr(10).join(acceptance(rw, before, cal, bench, sec))}

{bench_line}
{header_part}
**Photos as users have them, with the detector.** `python -m models.pretrained.recipe.realworld_eval --ckpt
models/pretrained/model.pt --set LIVE1=../shared/datasets/LIVE1 --set BSDS500=<every 4th image of
../shared/datasets/BSDS500/test> --qfs 10,30,50 --params presets/full.yaml --precision {rw.get("precision", "bf16").split()[-1]}
--json models/pretrained/provenance/real_world.json` ({rw.get("precision", "")}). "before": the rules alone (the
table of the previous revision, QF 10 and 30); "best": the best hand-picked QF of
`evaluate.best_qf_grid` and its gain; "share": the decision's gain over the best one. BSDS500's
references are JPEG 95s: they are left out of the never-compressed and QF 95/98 cases.

| set | case | QF | before | gain | best | share | unchanged | decided by |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows(rw, before))}
"""
