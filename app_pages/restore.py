"""Restore page: a sample photo, an upload, several uploads or a zip of photos in; the restored
photos out, upright, with their colour profile and metadata, in the format chosen."""

import numpy as np
import streamlit as st

from app_pages import batch, common, photos, single
from pipeline.core import images

TYPES = [s.lstrip(".") for s in images.IMAGE_SUFFIXES]

st.title("Restore JPEG photos")
restorer, model_key = common.model_picker()

# ---- input: a bundled sample compressed here (its original is known), or uploads -----------
source = st.radio("Photo", ["Sample photo", "Upload"], horizontal=True)
original = None
if source == "Sample photo":
    samples = common.sample_photos()
    left, right = st.columns(2)
    name = left.selectbox("Sample photo", list(samples))
    q = right.slider("Compress it at JPEG quality", 5, 95, 20)
    original = samples[name]
    files = [(f"{name}_q{q}.jpg", images.encode_jpeg(original, q))]
else:
    uploads = st.file_uploader(
        "Photos to restore: JPEGs (or PNG, WebP, ...), several at once, or one zip of them",
        type=[*TYPES, "zip"],
        accept_multiple_files=True,
    )
    ref = st.file_uploader("The uncompressed original of a single photo (optional: scores PSNR/SSIM)", type=TYPES)
    if not uploads:
        st.info("Upload a photo to restore it; upload several, or a zip, to restore them all at once.")
        st.stop()
    try:
        files = photos.unpack([(u.name, u.getvalue()) for u in uploads])
        if ref is not None:
            original = np.ascontiguousarray(images.decode_image(ref.getvalue(), ref.name).upright())
    except (photos.UploadError, images.ImageError) as e:
        st.error(f"Cannot use this file: {e}")
        st.stop()
    if not files:
        st.error("Cannot use this upload: the zip holds no images.")
        st.stop()

if len(files) == 1:
    single.show(restorer, model_key, *files[0], original)
else:
    batch.show(restorer, model_key, files)
