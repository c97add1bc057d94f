"""One photo on the Restore page: its decision, the QF override and strength, before and after,
zoom, wipe and difference views, scores against an original, and the download."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app_pages import common, photos
from pipeline.core import images
from pipeline.evaluation import metrics
from pipeline.restoration import tiles, writer
from pipeline.restoration.options import FORMATS
from pipeline.restoration.restorer import Restorer


def show(restorer: Restorer, model_key: str, filename: str, data: bytes, original: np.ndarray | None) -> None:
    """The page for one photo (``original``: its uncompressed original, upright, to score against)."""
    digest = hashlib.sha1(data).hexdigest()
    try:
        decoded = common.memo("decoded", (digest, filename), lambda: images.decode_image(data, filename))
    except images.ImageError as e:
        st.error(f"Cannot use this file: {e}")
        st.stop()

    # ---- QF and grid: decided as `restore` does (Restorer.decide); the slider overrides ----------
    decision = common.memo("decision", (model_key, digest), lambda: restorer.decide(decoded.rgb, decoded.header))
    c1, c2, c3, c4 = st.columns(4)
    if decoded.qf is None:
        c1.metric("QF in the file", "none", help="Not a JPEG (or no quantization tables).")
    else:
        c1.metric("QF in the file", decoded.qf, help="Read from the JPEG's quantization tables.")
        c1.caption("exact: standard IJG tables" if decoded.qf_exact else "approximate: non-standard tables")
    c2.metric("Decided", "unchanged" if decision.unchanged else f"QF {decision.qf:.0f}", help=decision.message)
    c2.caption(decision.message.replace("use --q to force", "tick 'Restore it anyway' to force"))
    if decision.reading and decision.reading not in decision.message:  # the JPEG-history detector's reading
        c2.caption(decision.reading)
    default_qf = 95 if decision.unchanged else int(round(decision.qf))
    qf = c3.slider(
        "Restore as QF",
        1,
        100,
        default_qf,
        key=f"qf_{digest}",
        help="Lower removes more artifacts, higher keeps more detail. Moving it overrides the decision.",
    )
    strength = c4.slider(
        "Strength",
        0.0,
        1.0,
        restorer.options.strength,
        0.05,
        help="How much of the restoration to keep; the rest is the input, grain and all.",
    )
    force = decision.unchanged and st.checkbox("Restore it anyway", help="This photo shows no JPEG compression.")
    if decision.unchanged and not force:
        st.info("No JPEG compression found in this photo: it is left unchanged. Tick 'Restore it anyway' to force.")
    tta = st.checkbox("Average 8 flips/rotations (TTA: 8x slower, slightly better)")
    if decoded.orientation != 1:
        st.caption(
            f"Stored turned (EXIF orientation {decoded.orientation}): restored on the file's own 8x8 grid, "
            "shown and saved upright."
        )
    output = common.output_options(int(decoded.meta.has_gps), photos.gps_text(decoded.meta))
    st.caption(f"Metadata the download keeps: {photos.kept(decoded.meta, output.strip_metadata)}.")
    overridden = qf != default_qf or force
    full_by = restorer.replace(qf=float(qf) if overridden else None, tta=tta)  # the options this photo asks for
    chosen_by = full_by.replace(strength=strength)
    chosen = full_by.decide(decoded.rgb, decoded.header) if overridden else decision
    run_key = (model_key, digest, chosen.qf, chosen.offset, tta)
    if st.session_state.get("cancelled") == run_key:
        st.warning("Restoration cancelled.")
        if not st.button("Restore again"):
            st.stop()
        st.session_state.pop("cancelled")

    def run() -> tuple[np.ndarray, float]:  # at full strength: moving the strength slider mixes again, no more
        stop = st.button("Cancel", on_click=lambda: st.session_state.update(cancelled=run_key))
        bar = st.progress(0.0, text=f"Restoring ({full_by.label})...")

        def step(done: int, total: int) -> None:  # the cancel is checked between tiles
            if stop or st.session_state.get("cancelled") == run_key:
                raise tiles.Cancelled
            bar.progress(done / total, text=f"Restoring ({full_by.label}): tile {done} of {total}")

        t = time.perf_counter()
        pred = full_by.restore(decoded.rgb, chosen, step, decoded.rgb16)
        bar.empty()
        return pred, time.perf_counter() - t

    def finish() -> tuple[np.ndarray, bytes, float, tuple[str, ...]]:
        pixels = chosen_by.blend(pred.copy(), decoded.rgb, decoded.rgb16)
        shown = np.ascontiguousarray(decoded.upright(tiles.to_uint8(pixels)))
        data, notes = writer.encode(pixels, decoded, output)  # overwrites pixels: last
        return shown, data, seconds, notes

    try:
        pred, seconds = common.memo("pixels", run_key, run)
    except tiles.Cancelled:
        st.warning("Restoration cancelled.")
        st.stop()
    restored, file, seconds, notes = common.memo("restored", (run_key, strength, output), finish)
    for note in notes:
        st.warning(f"{filename}: {note}")
    st.caption(f"Restored by {full_by.label} in {seconds:.1f} s.")
    upright = np.ascontiguousarray(decoded.upright())
    before, after = common.preview(upright), common.preview(restored)

    st.subheader("Before and after")
    left, right = st.columns(2)
    w, h = decoded.size
    left.image(before, caption=f"Input: {filename} ({w}x{h})", output_format="PNG")
    label = "Left unchanged" if chosen.unchanged else f"Restored (QF {chosen.qf:.0f})"
    right.image(after, caption=label + ("" if strength == 1 else f", strength {strength:g}"), output_format="PNG")
    name = common.FORMAT_NAMES[output.format]
    suffix = FORMATS[output.format]
    st.download_button(
        f"Download the restored {name}", file, f"{Path(filename).stem}_restored{suffix}", common.MIME[output.format]
    )

    if original is not None:
        if original.shape != upright.shape:
            st.warning(f"The original is {original.shape[1]}x{original.shape[0]}, the input {w}x{h}: no scores.")
        else:
            scores = common.memo(
                "scores",
                (run_key, strength, hashlib.sha1(original).hexdigest()),
                lambda: (metrics.score(original, upright), metrics.score(original, restored)),
            )
            table = pd.DataFrame(scores, index=["input", "restored"]).T
            table["gain"] = table["restored"] - table["input"]
            st.subheader("Scores against the original")
            st.dataframe(table.rename(index=str.upper).style.format("{:.4f}"))

    st.subheader("Zoom")
    c1, c2, c3 = st.columns(3)
    x = c1.slider("Across (%)", 0, 100, 50)
    y = c2.slider("Down (%)", 0, 100, 50)
    size = min(c3.select_slider("Crop size (px)", [32, 64, 128, 256], value=64), h, w)
    factor = max(1, 512 // size)
    left, right = st.columns(2)
    left.image(common.zoom(common.crop(upright, x / 100, y / 100, size), factor), caption="Input", output_format="PNG")
    right.image(
        common.zoom(common.crop(restored, x / 100, y / 100, size), factor), caption="Restored", output_format="PNG"
    )

    st.subheader("Wipe")
    cut = st.slider("Restored on the left, input on the right (%)", 0, 100, 50)
    st.image(common.wipe(after, before, cut / 100), output_format="PNG")

    st.subheader("Difference")
    gain = st.slider("Amplification", 1, 20, 8)
    st.image(common.diff_map(before, after, gain), caption=f"|restored - input| x {gain}", output_format="PNG")
