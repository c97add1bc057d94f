"""The data set catalog, the bundled sample, and evaluation pairs.

A catalog entry says where a set comes from (official URL, archive, which members are the
images, the checksum when it is published) and which layouts of a folder a user already has
are accepted (``data.local.<SET>``). ``sample_train`` / ``sample_test`` are scikit-image's
bundled colour photos: no network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.images import ImageError, list_images


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set comes from.

    url: the official archive (None for the bundled sample). sha256/size: pinned when known
    (None: the digest seen is recorded and printed, so that it can be pinned). members: glob,
    inside the extracted archive, of the image files. local_subdirs: folders tried, in order,
    inside a user's ``data.local`` folder. role: "train" or "test".
    """

    name: str
    role: str
    url: str | None
    members: str
    sha256: str | None = None
    size: int | None = None
    local_subdirs: tuple[str, ...] = (".",)
    source: str = ""


_BSR = "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"

CATALOG: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec("DIV2K_train", "train", "http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
                    "DIV2K_train_HR/*.png", local_subdirs=("train/HR", "DIV2K_train_HR", "."),
                    source="Agustsson & Timofte, NTIRE 2017 (800 2K images)"),
        DatasetSpec("DIV2K_valid", "test", "http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
                    "DIV2K_valid_HR/*.png", local_subdirs=("valid/HR", "DIV2K_valid_HR", "."),
                    source="Agustsson & Timofte, NTIRE 2017 (100 2K images)"),
        DatasetSpec("Flickr2K", "train", "https://cv.snu.ac.kr/research/EDSR/Flickr2K.tar",
                    "Flickr2K/Flickr2K_HR/*.png", local_subdirs=("Flickr2K_HR", "HR", "."),
                    source="Lim et al., EDSR, CVPRW 2017 (2650 2K images)"),
        DatasetSpec("BSD200", "train", _BSR, "BSR/BSDS500/data/images/train/*.jpg",
                    local_subdirs=("train", "images/train", "."),
                    source="BSDS500 train split, Arbelaez et al., TPAMI 2011"),
        DatasetSpec("T91", "train", "http://vllab.ucmerced.edu/wlai24/LapSRN/results/SR_training_datasets.zip",
                    "T91/*.png", local_subdirs=("T91", "."), source="Yang et al., TIP 2010 (91 images)"),
        DatasetSpec("LIVE1", "test", "http://live.ece.utexas.edu/research/quality/release2/databaserelease2.zip",
                    "databaserelease2/refimgs/*.bmp", local_subdirs=("refimgs", "."),
                    source="LIVE image quality database release 2, UT Austin (29 reference images)"),
        DatasetSpec("BSDS500", "test", _BSR, "BSR/BSDS500/data/images/test/*.jpg",
                    local_subdirs=("test", "images/test", "."),
                    source="BSDS500 test split, Arbelaez et al., TPAMI 2011 (200 images)"),
        DatasetSpec("Urban100", "test", "https://uofi.box.com/shared/static/65upg43jjd0a4cwsiqgl6o6ixube6klm.zip",
                    "image_SRF_2/*_HR.png", local_subdirs=("HR", "image_SRF_2", "."),
                    source="Huang et al., SelfExSR, CVPR 2015 (100 images)"),
        DatasetSpec("sample_train", "train", None, "", source="scikit-image bundled photos"),
        DatasetSpec("sample_test", "test", None, "", source="scikit-image bundled photos"),
    ]
}

# scikit-image's bundled colour photos (no download), split into train and held-out test.
SAMPLE_PHOTOS = {
    "sample_train": ("astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"),
    "sample_test": ("chelsea", "motorcycle_left"),
}


def spec(name: str) -> DatasetSpec:
    if name not in CATALOG:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(CATALOG)}")
    return CATALOG[name]


def sample_images(name: str) -> dict[str, np.ndarray]:
    """The bundled sample set ``name`` as {photo name: RGB uint8 array}."""
    import skimage.data

    out = {}
    for photo in SAMPLE_PHOTOS[name]:
        if photo == "motorcycle_left":
            img = skimage.data.stereo_motorcycle()[0]
        else:
            img = getattr(skimage.data, photo)()
        out[photo] = np.ascontiguousarray(img[..., :3].astype(np.uint8))
    return out


@dataclass(frozen=True)
class EvalPair:
    name: str
    lq: Path
    gt: Path


def eval_pairs(lq_dir: Path, gt_dir: Path) -> list[EvalPair]:
    """Pair ``lq_dir/<name>.*`` with ``gt_dir/<name>.*`` by file stem.

    Raises ImageError naming the folder when it is empty, and the files when the names differ.
    (Sizes are checked by the caller once decoded.)
    """
    lq_files, gt_files = list_images(Path(lq_dir)), list_images(Path(gt_dir))
    if not lq_files:
        raise ImageError(f"{lq_dir}: no image files")
    if not gt_files:
        raise ImageError(f"{gt_dir}: no image files")
    lq_by, gt_by = {p.stem: p for p in lq_files}, {p.stem: p for p in gt_files}
    missing_gt = sorted(set(lq_by) - set(gt_by))
    missing_lq = sorted(set(gt_by) - set(lq_by))
    if missing_gt or missing_lq:
        parts = []
        if missing_gt:
            parts.append(f"no ground truth in {gt_dir} for {', '.join(str(lq_by[n].name) for n in missing_gt[:10])}")
        if missing_lq:
            parts.append(f"no input in {lq_dir} for {', '.join(str(gt_by[n].name) for n in missing_lq[:10])}")
        raise ImageError("mismatched file names: " + "; ".join(parts))
    return [EvalPair(n, lq_by[n], gt_by[n]) for n in sorted(lq_by)]


# The layout of one generated test set under the test-set folder (dvc.yaml names the folder and
# its outputs; the evaluate and promote stages find a set's files through these).
def refs_dir(testsets: Path, name: str) -> Path:
    """Lossless ground truth of set ``name``."""
    return Path(testsets) / name / "refimgs"


def jpeg_dir(testsets: Path, name: str, qf: int) -> Path:
    """The OpenCV 4:2:0 JPEGs of set ``name`` at quality ``qf``."""
    return Path(testsets) / name / "color" / f"qf_{qf}"


def realworld_dir(testsets: Path, name: str) -> Path:
    """The real-world cases of set ``name`` (pipeline/data/realworld.py)."""
    return Path(testsets) / name / "realworld"
