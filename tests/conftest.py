"""Shared fixtures: a throw-away MLflow store, small generated images, the shared datasets."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"benchmark images not found at {SHARED} (only present on the project's machines)"
)
EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None, reason="exiftool not found (Debian: apt-get install libimage-exiftool-perl; .ci/run installs it)"
)


def exiftool(path: Path) -> dict:
    """Every tag exiftool reads in ``path``, as {"Group:Tag": value} with numeric values (-n);
    its warnings under "ExifTool:Warning"."""
    out = subprocess.run([EXIFTOOL, "-j", "-a", "-G1", "-n", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real SQLite MLflow store and registry in a temporary folder."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    return uri


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite database with its schema created (the migrations take seconds)."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)
    return db


@pytest.fixture
def mlflow_store(mlflow_uri: str, tmp_path: Path, migrated_db: Path) -> str:
    """Like ``mlflow_uri``, with the database already created: a copy, not a fresh migration."""
    shutil.copyfile(migrated_db, tmp_path / "mlflow.db")
    return mlflow_uri


@pytest.fixture
def forkserver(monkeypatch: pytest.MonkeyPatch) -> multiprocessing.context.BaseContext:
    """A multiprocessing context for tests of concurrent processes: like "spawn", each process
    starts clean (none of this process's MLflow or SQLite connections), but it is forked from a
    server that imported torch and mlflow once instead of importing them again (seconds each)."""
    # Python 3.11's forkserver does not apply sys.path before preloading: PYTHONPATH does.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["stages.promote"])  # takes effect when the server first starts
    return ctx


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like RGB uint8 image: smooth gradients, edges and some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            128 + 90 * np.sin(x / (7 + 5 * rng.random()) + rng.random() * 6),
            128 + 90 * np.cos(y / (9 + 5 * rng.random()) + rng.random() * 6),
            128 + 60 * np.sin((x + y) / (13 + 5 * rng.random())),
        ],
        axis=2,
    )
    img[h // 3 : h // 2, w // 4 : w // 2] = rng.integers(0, 255, 3)  # a sharp-edged patch
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one thread. With two, OpenMP's spinning barriers make every op ~50x
    slower as soon as another process competes for the two cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def image_factory():
    return smooth_image


@pytest.fixture(autouse=True)
def _no_analytics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv(
        "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    )


# --- Photos as cameras and phones write them: orientation, ICC profile, EXIF (GPS, thumbnail), XMP -----
MAKE, TAKEN = "TestCam", "2024:05:06 07:08:09"
GPS = (52.36708, 4.88333)  # 52 deg 22' 1.5" N, 4 deg 53' 0" E
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/jpeg"/></rdf:RDF></x:xmpmeta>'
)


@functools.cache
def icc_profile() -> bytes:
    """A real ICC profile: LittleCMS's sRGB (588 bytes; it holds its creation time: made once)."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def camera_exif(
    width: int, height: int, orientation: int = 1, gps: bool = True, thumbnail: bool = True, order: str = ">"
) -> bytes:
    """An EXIF blob (TIFF structure, byte ``order``) as a camera writes it: Make,
    DateTimeOriginal, the pixel dimensions, the orientation, a GPS position and a JPEG thumbnail
    in IFD1."""
    import io
    import struct

    from PIL import Image

    from pipeline.core.metadata import parse_exif

    exif = Image.Exif()
    exif.endian = order
    exif[0x010F], exif[0x0110], exif[0x0112] = MAKE, "Model 1", orientation
    sub = exif.get_ifd(0x8769)
    sub[0x9003], sub[0xA002], sub[0xA003] = TAKEN, width, height
    if gps:
        pos = exif.get_ifd(0x8825)
        pos[1], pos[2], pos[3], pos[4] = "N", (52.0, 22.0, 1.5), "E", (4.0, 53.0, 0.0)
    blob = bytearray(exif.tobytes()[6:])  # without "Exif\0\0"
    if thumbnail:
        parsed = parse_exif(bytes(blob))
        o = parsed.order
        ifd0 = struct.unpack_from(o + "I", blob, 4)[0]
        n = struct.unpack_from(o + "H", blob, ifd0)[0]
        buf = io.BytesIO()
        Image.new("RGB", (16, 12), (200, 30, 30)).save(buf, "JPEG")
        ifd1 = len(blob) + len(blob) % 2
        blob += b"\x00" * (ifd1 - len(blob))
        thumb_at = ifd1 + 2 + 2 * 12 + 4
        blob += struct.pack(o + "H", 2)
        blob += struct.pack(o + "HHII", 0x0201, 4, 1, thumb_at)  # JPEGInterchangeFormat
        blob += struct.pack(o + "HHII", 0x0202, 4, 1, len(buf.getvalue()))  # its length
        blob += b"\x00\x00\x00\x00" + buf.getvalue()
        struct.pack_into(o + "I", blob, ifd0 + 2 + 12 * n, ifd1)
    return bytes(blob)


def camera_jpeg(rgb: np.ndarray, qf: int = 90, orientation: int = 1, **exif_args: bool) -> bytes:
    """A JPEG of ``rgb`` (its pixels as stored) with an ICC profile, camera EXIF and XMP (Pillow, 4:2:0)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    exif = camera_exif(rgb.shape[1], rgb.shape[0], orientation, **exif_args)
    Image.fromarray(rgb).save(buf, "JPEG", quality=qf, exif=b"Exif\x00\x00" + exif, icc_profile=icc_profile(), xmp=XMP)
    return buf.getvalue()


TINY_QACNET = {"width": 8, "mid_blocks": 1, "emb_dim": 16, "estimator_width": 16}


def tiny_checkpoint(path: Path, seed: int) -> Path:
    """A tiny QACNet (``TINY_QACNET``) with randomized weights (untrained it is the identity), as a
    checkpoint file."""
    import torch

    from pipeline.models import build_model
    from pipeline.models.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = build_model("qacnet", **TINY_QACNET)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.03 * torch.randn_like(p))
    save_checkpoint(path, "qacnet", TINY_QACNET, model, {})
    return path
