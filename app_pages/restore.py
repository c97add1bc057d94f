"""Restore page: a sample photo or an upload in, the restored PNG out, with ways to compare."""

import hashlib
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages import common
from pipeline.core import images
from pipeline.evaluation import metrics
from pipeline.restoration import tiles, writer

TYPES = [s.lstrip(".") for s in images.IMAGE_SUFFIXES]

st.title("Restore a JPEG")
restorer, model_key = common.model_picker()

# ---- input: a bundled sample compressed here (its original is known), or an upload ----------
source = st.radio("Photo", ["Sample photo", "Upload"], horizontal=True)
original, ref = None, None
if source == "Sample photo":
    photos = common.sample_photos()
    left, right = st.columns(2)
    name = left.selectbox("Sample photo", list(photos))
    q = right.slider("Compress it at JPEG quality", 5, 95, 20)
    original = photos[name]
    data, filename = images.encode_jpeg(original, q), f"{name}_q{q}.jpg"
else:
    upload = st.file_uploader("A JPEG (or PNG, WebP, ...) to restore", type=TYPES)
    ref = st.file_uploader("Its uncompressed original (optional: scores PSNR/SSIM)", type=TYPES)
    if upload is None:
        st.info("Upload a photo to restore it.")
        st.stop()
    data, filename = upload.getvalue(), upload.name
digest = hashlib.sha1(data).hexdigest()
try:
    decoded = common.memo("decoded", (digest, filename), lambda: images.decode_image(data, filename))
    if ref is not None:
        original = images.decode_image(ref.getvalue(), ref.name).rgb
except images.ImageError as e:
    st.error(f"Cannot use this file: {e}")
    st.stop()

# ---- QF and grid: decided as `restore` does (Restorer.decide); the slider overrides ----------
decision = common.memo("decision", (model_key, digest), lambda: restorer.decide(decoded.rgb, decoded.header))
c1, c2, c3 = st.columns(3)
if decoded.qf is None:
    c1.metric("QF in the file", "none", help="Not a JPEG (or no quantization tables).")
else:
    c1.metric("QF in the file", decoded.qf, help="Read from the JPEG's quantization tables.")
    c1.caption("exact: standard IJG tables" if decoded.qf_exact else "approximate: non-standard tables")
c2.metric("Decided", "unchanged" if decision.unchanged else f"QF {decision.qf:.0f}", help=decision.message)
c2.caption(decision.message.replace("use --q to force", "tick 'Restore it anyway' to force"))
default_qf = 95 if decision.unchanged else int(round(decision.qf))
qf = c3.slider(
    "Restore as QF",
    1,
    100,
    default_qf,
    key=f"qf_{digest}",
    help="Lower removes more artifacts, higher keeps more detail. Moving it overrides the decision.",
)
force = decision.unchanged and st.checkbox("Restore it anyway", help="This photo shows no JPEG compression.")
if decision.unchanged and not force:
    st.info("No JPEG compression found in this photo: it is left unchanged. Tick 'Restore it anyway' to force.")
tta = st.checkbox("Average 8 flips/rotations (TTA: 8x slower, slightly better)")
overridden = qf != default_qf or force
chosen_by = restorer.replace(qf=float(qf) if overridden else None, tta=tta)  # the options this photo asks for
chosen = chosen_by.decide(decoded.rgb, decoded.header) if overridden else decision
run_key = (model_key, digest, chosen.qf, chosen.offset, tta)
if st.session_state.get("cancelled") == run_key:
    st.warning("Restoration cancelled.")
    if not st.button("Restore again"):
        st.stop()
    st.session_state.pop("cancelled")


def run() -> tuple:
    stop = st.button("Cancel", on_click=lambda: st.session_state.update(cancelled=run_key))
    bar = st.progress(0.0, text=f"Restoring ({chosen_by.label})...")

    def step(done: int, total: int) -> None:  # the cancel is checked between tiles
        if stop or st.session_state.get("cancelled") == run_key:
            raise tiles.Cancelled
        bar.progress(done / total, text=f"Restoring ({chosen_by.label}): tile {done} of {total}")

    t = time.perf_counter()
    pred = chosen_by.restore(decoded.rgb, chosen, step)
    bar.empty()
    restored = tiles.to_uint8(pred)
    png = (
        writer.unchanged_bytes(decoded, data, Path(filename).suffix)
        if chosen.unchanged
        else writer.encode_output(pred, decoded)
    )
    return restored, png, time.perf_counter() - t  # encode_output overwrites pred: last


try:
    restored, png, seconds = common.memo("restored", run_key, run)
except tiles.Cancelled:
    st.warning("Restoration cancelled.")
    st.stop()
st.caption(f"Restored by {chosen_by.label} in {seconds:.1f} s.")
before, after = common.preview(decoded.rgb), common.preview(restored)

st.subheader("Before and after")
left, right = st.columns(2)
h, w = decoded.rgb.shape[:2]
left.image(before, caption=f"Input: {filename} ({w}x{h})", output_format="PNG")
right.image(
    after, caption="Left unchanged" if chosen.unchanged else f"Restored (QF {chosen.qf:.0f})", output_format="PNG"
)
st.download_button("Download the restored PNG", png, f"{Path(filename).stem}_restored.png", "image/png")

if original is not None:
    if original.shape != decoded.rgb.shape:
        st.warning(f"The original is {original.shape[1]}x{original.shape[0]}, the input {w}x{h}: no scores.")
    else:
        scores = common.memo(
            "scores",
            (model_key, digest, qf, tta, hashlib.sha1(original).hexdigest()),
            lambda: (metrics.score(original, decoded.rgb), metrics.score(original, restored)),
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
left.image(common.zoom(common.crop(decoded.rgb, x / 100, y / 100, size), factor), caption="Input", output_format="PNG")
right.image(common.zoom(common.crop(restored, x / 100, y / 100, size), factor), caption="Restored", output_format="PNG")

st.subheader("Wipe")
cut = st.slider("Restored on the left, input on the right (%)", 0, 100, 50)
st.image(common.wipe(after, before, cut / 100), output_format="PNG")

st.subheader("Difference")
gain = st.slider("Amplification", 1, 20, 8)
st.image(common.diff_map(before, after, gain), caption=f"|restored - input| x {gain}", output_format="PNG")
