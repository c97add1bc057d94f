"""Several photos on the Restore page (a multiple upload, or a zip): each decided and restored as
``restore`` does, a table of the decisions, and one zip of the restored photos with their metadata."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import pandas as pd
import streamlit as st

from app_pages import common, photos
from pipeline.core import images
from pipeline.core.metadata import Metadata
from pipeline.restoration import tiles
from pipeline.restoration.options import FORMATS
from pipeline.restoration.restorer import Restorer


def show(restorer: Restorer, model_key: str, files: Sequence[tuple[str, bytes]]) -> None:
    """The page for several photos: (name, bytes) each."""
    st.subheader(f"{len(files)} photos")
    c1, c2 = st.columns(2)
    strength = c1.slider(
        "Strength",
        0.0,
        1.0,
        restorer.options.strength,
        0.05,
        help="How much of the restoration to keep; the rest is the input, grain and all.",
    )
    tta = c2.checkbox("Average 8 flips/rotations (TTA: 8x slower, slightly better)")
    digests = tuple(hashlib.sha1(data).hexdigest() for _, data in files)
    metas = common.memo("metadata", digests, lambda: [_metadata(name, data) for name, data in files])
    output = common.output_options(sum(m is not None and m.has_gps for m in metas))
    chosen_by = restorer.replace(tta=tta, strength=strength)
    key = (model_key, digests, tta, strength, output)
    if st.session_state.get("cancelled") == key:
        st.warning("Restoration cancelled.")
        if not st.button("Restore again"):
            st.stop()
        st.session_state.pop("cancelled")

    def run() -> tuple[pd.DataFrame, bytes]:
        stop = st.button("Cancel", on_click=lambda: st.session_state.update(cancelled=key))
        bar = st.progress(0.0, text=f"Restoring ({chosen_by.label})...")
        names = photos.output_names([name for name, _ in files], FORMATS[output.format])
        rows, outputs = [], []
        for i, ((name, data), out_name, meta) in enumerate(zip(files, names, metas, strict=True)):

            def step(done: int, total: int, i: int = i, name: str = name) -> None:
                if stop or st.session_state.get("cancelled") == key:
                    raise tiles.Cancelled
                text = f"Restoring ({chosen_by.label}): {name}, tile {done} of {total}"
                bar.progress((i + done / total) / len(files), text=text)

            t = time.perf_counter()
            row = {"file": name, "output": out_name, "size": "", "QF": None, "from": "", "decision": ""}
            row |= {"GPS": bool(meta and meta.has_gps), "metadata kept": "", "seconds": 0.0, "status": "restored"}
            try:
                decoded = images.decode_image(data, name)
                file, d, notes = chosen_by.restore_decoded(decoded, step, output)
            except (images.ImageError, ValueError) as e:
                rows.append({**row, "status": f"failed: {str(e).removeprefix(f'{name}: ')}"})
                continue
            outputs.append((out_name, file))
            turned = "" if decoded.orientation == 1 else f", turned upright (EXIF orientation {decoded.orientation})"
            rows.append(
                {
                    **row,
                    "size": "{}x{}".format(*decoded.size),
                    "QF": d.qf,
                    "from": d.source,
                    "decision": d.message + turned,
                    "metadata kept": photos.kept(decoded.meta, output.strip_metadata),
                    "seconds": round(time.perf_counter() - t, 2),
                    "status": "; ".join(("restored", *notes)),
                }
            )
        bar.empty()
        return pd.DataFrame(rows), photos.zip_files(outputs)

    try:
        table, archive = common.memo("batch", key, run)
    except tiles.Cancelled:
        st.warning("Restoration cancelled.")
        st.stop()
    st.dataframe(table, hide_index=True)
    done = int(table["status"].str.startswith("restored").sum())
    if done < len(table):
        st.error(f"{len(table) - done} of {len(table)} photos could not be restored: see their status.")
    st.download_button(
        f"Download {done} restored photos (zip)",
        archive,
        "restored.zip",
        "application/zip",
        disabled=not done,
    )


def _metadata(name: str, data: bytes) -> Metadata | None:
    """A photo's metadata, read without decoding it (None when it cannot be read: its row says why)."""
    try:
        return images.probe(data, name)
    except images.ImageError:
        return None
