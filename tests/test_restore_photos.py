"""``restore`` on photos as cameras and phones write them (Pillow-made files, outputs read back with
Pillow and exiftool): orientation, metadata, formats, strength, folders, killed batches, reports,
and outputs that cannot be written."""

from __future__ import annotations

import csv
import errno
import io
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import GPS, MAKE, TAKEN, XMP, camera_jpeg, exiftool, icc_profile, needs_exiftool
from conftest import smooth_image as photo
from PIL import Image

from pipeline.core import files, images
from pipeline.core.metadata import Metadata
from pipeline.evaluation import metrics
from pipeline.models import build_model
from pipeline.models.checkpoint import save_checkpoint
from pipeline.restoration.options import FORMATS
from pipeline.restore import main

ROOT = Path(__file__).resolve().parent.parent
PARAMS = str(ROOT / "params.yaml")
SHIPPED = ROOT / "models" / "pretrained" / "model.pt"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny QACNet (what is tested here is the file around the pixels)."""
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, "qacnet", {"width": 8, "mid_blocks": 1}, build_model("qacnet", width=8, mid_blocks=1), {})
    return path


def restore(*args: object) -> int:
    return main([str(a) for a in args] + ["--params", PARAMS])


def report(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"{SHIPPED} not found")
def test_turned_photos_are_restored_on_their_own_grid(tmp_path, capsys):
    """Odd-sized JPEGs stored turned (EXIF orientation 3, 6, 8) come out upright and gain what the
    same file gains when its pixels are upright as stored (the shipped model, QF 20 and 90)."""
    stored = photo(83, 117, seed=5)  # 8x8 blocks do not tile it: turned, the grid leaves the origin
    for qf in (20, 90):
        for o in (1, 3, 6, 8):
            images.write_bytes(tmp_path / "in" / f"q{qf}_o{o}.jpg", camera_jpeg(stored, qf, o, thumbnail=False))
    assert restore(tmp_path / "in", "-o", tmp_path / "out", "--ckpt", SHIPPED, "-v") == 0
    out = capsys.readouterr().out
    for qf in (20, 90):
        gains = {}
        for o in (1, 3, 6, 8):
            ref = np.ascontiguousarray(images.turn(stored, o))  # the photo as it is shown
            jpeg = images.read_image(tmp_path / "in" / f"q{qf}_o{o}.jpg")  # upright
            restored = images.read_decoded(tmp_path / "out" / f"q{qf}_o{o}.png")
            assert restored.orientation == 1 and restored.rgb.shape == ref.shape
            gains[o] = metrics.psnr(ref, restored.rgb) - metrics.psnr(ref, jpeg)
            turned = "" if o == 1 else f", turned upright (EXIF orientation {o})"
            assert f"q{qf}_o{o}.jpg: {ref.shape[1]}x{ref.shape[0]}, QF {qf} from the JPEG header{turned}, " in out
        assert gains[1] > 0.3
        for o in (3, 6, 8):
            assert abs(gains[o] - gains[1]) < 0.02, (qf, o, gains)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_metadata_is_kept_in_every_format_and_stripped_on_request(tmp_path, ckpt, fmt):
    src = tmp_path / "phone.jpg"
    src.write_bytes(camera_jpeg(photo(40, 56, 1), 60, orientation=6))
    suffix = FORMATS[fmt]
    assert restore(src, "-o", tmp_path / "kept", "--ckpt", ckpt, "--format", fmt) == 0
    assert restore(src, "-o", tmp_path / "stripped", "--ckpt", ckpt, "--format", fmt, "--strip-metadata") == 0
    kept, stripped = tmp_path / "kept" / f"phone{suffix}", tmp_path / "stripped" / f"phone{suffix}"
    assert sorted(os.listdir(tmp_path / "kept")) == [kept.name]
    with Image.open(kept) as im:
        assert im.size == (40, 56)  # upright
        assert im.info["icc_profile"] == icc_profile()
        exif = im.getexif()
        assert (exif[0x010F], exif[0x0112], exif.get_ifd(0x8769)[0x9003]) == (MAKE, 1, TAKEN)
        assert exif.get_ifd(0x8825)[2] == (52.0, 22.0, 1.5)
    assert images.read_decoded(kept).meta.xmp == XMP
    with Image.open(stripped) as im:
        assert im.info["icc_profile"] == icc_profile()  # colour is not private
        exif = im.getexif()  # a TIFF's own tags (its image structure) are there, but no EXIF
        assert not {0x010F, 0x8769, 0x8825, 700} & set(exif) and "xmp" not in im.info
        assert "XML:com.adobe.xmp" not in im.info
    stripped_meta = images.read_decoded(stripped).meta
    assert stripped_meta == Metadata(icc=icc_profile())


@needs_exiftool
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_exiftool_reads_what_restore_kept(tmp_path, ckpt, fmt):
    src = tmp_path / "phone.jpg"
    src.write_bytes(camera_jpeg(photo(40, 56, 1), 60, orientation=8))
    assert restore(src, "-o", tmp_path / "kept", "--ckpt", ckpt, "--format", fmt) == 0
    assert restore(src, "-o", tmp_path / "stripped", "--ckpt", ckpt, "--format", fmt, "--strip-metadata") == 0
    kept = exiftool(tmp_path / "kept" / f"phone{FORMATS[fmt]}")
    assert "ExifTool:Warning" not in kept, kept["ExifTool:Warning"]
    assert (kept["IFD0:Make"], kept["ExifIFD:DateTimeOriginal"], kept["IFD0:Orientation"]) == (MAKE, TAKEN, 1)
    assert (kept["Composite:GPSLatitude"], kept["Composite:GPSLongitude"]) == pytest.approx(GPS, abs=1e-5)
    assert (kept["ExifIFD:ExifImageWidth"], kept["ExifIFD:ExifImageHeight"]) == (40, 56)
    assert "IFD1:ThumbnailLength" not in kept  # the thumbnail showed the photo before restoring
    assert kept["XMP-dc:Format"] == "image/jpeg"
    stripped = exiftool(tmp_path / "stripped" / f"phone{FORMATS[fmt]}")
    assert not [k for k in stripped if k.startswith(("ExifIFD:", "GPS:", "XMP")) or "GPS" in k]
    assert "IFD0:Make" not in stripped and any(k.startswith("ICC") for k in stripped)


def test_sixteen_bit_png_stays_sixteen_bit_in_png_and_tiff(tmp_path, ckpt):
    rgb16 = (photo(48, 64, 2).astype(np.uint16) * 257) ^ np.uint16(0x55)  # samples 8 bits cannot hold
    src = tmp_path / "scan.png"
    src.write_bytes(images.encode(rgb16, "png", Metadata(icc=icc_profile())).data)
    for fmt in ("png", "tiff"):
        assert restore(src, "-o", tmp_path / fmt, "--ckpt", ckpt, "--format", fmt, "--q", 40) == 0
        out = images.read_decoded(tmp_path / fmt / f"scan{FORMATS[fmt]}")
        assert out.bits == 16 and out.rgb16.shape == rgb16.shape and out.meta.icc == icc_profile()
        assert np.abs(out.rgb16.astype(int) - rgb16).max() > 0  # restored, not copied
        assert len(np.unique(out.rgb16 & 0xFF)) > 16  # 16-bit samples, not 8-bit ones times 257
    assert restore(src, "-o", tmp_path / "same", "--ckpt", ckpt, "--format", "tiff", "--q", 40, "--strength", 0) == 0
    np.testing.assert_array_equal(images.read_decoded(tmp_path / "same" / "scan.tif").rgb16, rgb16)


def test_strength_mixes_the_restoration_with_the_input(tmp_path, ckpt):
    src = tmp_path / "p.jpg"
    src.write_bytes(images.encode_jpeg(photo(48, 64, 3), 20))
    for s in ("0", "0.5", "1"):
        assert restore(src, "-o", tmp_path / s, "--ckpt", ckpt, "--strength", s) == 0
    outputs = (src, tmp_path / "0.5" / "p.png", tmp_path / "1" / "p.png")
    jpeg, half, full = (images.read_image(p).astype(float) for p in outputs)
    np.testing.assert_array_equal(images.read_image(tmp_path / "0" / "p.png"), jpeg)
    assert np.abs(half - (jpeg + full) / 2).max() <= 1.0  # halfway, within rounding


def test_corrupt_exif_and_invalid_icc_are_restored_with_a_warning(tmp_path, ckpt, capsys):
    buf = io.BytesIO()
    Image.fromarray(photo(40, 48, 4)).save(
        buf, "JPEG", quality=30, exif=b"Exif\x00\x00II*\x00\xff\xff\x00\x00", icc_profile=b"not a profile" * 20
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "odd.jpg").write_bytes(buf.getvalue())
    assert restore(tmp_path / "in", "-o", tmp_path / "out", "--ckpt", ckpt, "--format", "jpeg") == 0
    err = capsys.readouterr().err
    assert f"{tmp_path / 'in' / 'odd.jpg'}: warning: ICC profile not kept (not an ICC profile)" in err
    assert "EXIF not kept (corrupt: an IFD at offset 65535 lies outside its 8 bytes)" in err
    assert images.read_decoded(tmp_path / "out" / "odd.jpg").qf == 95


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "gif"], "argument --format: invalid choice: 'gif'"),
        (["--format", "jpeg", "--quality", "0"], "--quality must be in 1..100, got 0"),
        (["--format", "jpeg", "--quality", "101"], "--quality must be in 1..100, got 101"),
        (["--quality", "90"], "--quality is for --format jpeg"),
        (["--strength", "1.5"], "--strength must be in 0..1, got 1.5"),
        (["--strength", "-0.1"], "--strength must be in 0..1, got -0.1"),
        (["--png-compression", "10"], "--png-compression must be in 0..9, got 10"),
        (["--format", "webp", "--png-compression", "6"], "--png-compression is for PNG output"),
    ],
)
def test_bad_output_options_are_usage_errors(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    images.write_bytes(tmp_path / "x.jpg", images.encode_jpeg(photo(16, 16), 50))
    assert restore("x.jpg", "-o", "out", "--ckpt", "missing.pt", *args) == 2  # before the model is even looked for
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_png_compression_makes_smaller_files_of_the_same_pixels(tmp_path, ckpt):
    images.write_bytes(tmp_path / "p.jpg", images.encode_jpeg(photo(160, 200, 3), 30))
    assert restore(tmp_path / "p.jpg", "-o", tmp_path / "fast", "--ckpt", ckpt) == 0
    assert restore(tmp_path / "p.jpg", "-o", tmp_path / "small", "--ckpt", ckpt, "--png-compression", "9") == 0
    fast, small = tmp_path / "fast" / "p.png", tmp_path / "small" / "p.png"
    assert small.stat().st_size < fast.stat().st_size
    assert (images.read_image(small) == images.read_image(fast)).all()


def tree(root: Path, n: int) -> list[Path]:
    """``n`` JPEGs in a tree of folders, and some files that are not photos."""
    paths = []
    for i in range(n):
        path = root / ["", "2023", "2023/summer", "2024"][i % 4] / f"p{i:02d}.jpg"
        images.write_bytes(path, images.encode_jpeg(photo(160, 200, i), 30))
        paths.append(path.relative_to(root))
    (root / "2024" / "notes.txt").write_text("not a photo")
    (root / ".thumbnails").mkdir()
    images.write_bytes(root / ".thumbnails" / "p00.jpg", images.encode_jpeg(photo(16, 16), 30))
    return paths


def test_recursive_mirrors_the_tree_and_reports(tmp_path, ckpt, capsys):
    paths = tree(tmp_path / "in", 6)
    assert restore(tmp_path / "in", "-o", tmp_path / "flat", "--ckpt", ckpt) == 0  # not recursive
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["p00.png", "p04.png"]
    assert "2023: skipped, a folder (use -r to restore subfolders)" in capsys.readouterr().err
    out = tmp_path / "in" / "restored"  # inside the tree it walks: never walked itself
    args = ("-o", out, "-r", "--ckpt", ckpt, "--format", "webp", "--report", tmp_path / "report.csv")
    assert restore(tmp_path / "in", *args) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.webp")) == sorted(
        str(p.with_suffix(".webp")) for p in paths
    )
    rows = report(tmp_path / "report.csv")
    assert [r["status"] for r in rows] == ["skipped"] + ["restored"] * 6  # notes.txt first: skipped at once
    first = next(r for r in rows if r["file"].endswith("p00.jpg"))
    assert (first["size"], first["qf"], first["qf_source"], first["decision"]) == (
        "200x160",
        "30",
        "header",
        "QF 30 from the JPEG header",
    )
    assert float(first["seconds"]) > 0 and first["output"] == str(out / "p00.webp")
    assert restore(tmp_path / "in", *args) == 0
    assert {r["status"] for r in report(tmp_path / "report.csv")} == {"skipped"}


def test_a_batch_killed_halfway_ends_with_every_photo_restored_once(tmp_path, ckpt):
    paths = tree(tmp_path / "in", 20)
    out, cmd = tmp_path / "out", [sys.executable, "-m", "pipeline.restore", str(tmp_path / "in"), "-r"]
    cmd += ["-o", str(out), "--ckpt", str(ckpt), "--params", PARAMS, "--report", str(tmp_path / "first.csv")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.rglob("*.png"))) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert 8 <= len(done) < 20, "the batch was not killed halfway"
    assert not (tmp_path / "first.csv").exists()  # killed: no report, and no half-written one

    assert restore(tmp_path / "in", "-o", out, "-r", "--ckpt", ckpt, "--report", tmp_path / "second.csv") == 0
    outputs = sorted(out.rglob("*.png"))
    assert [p.relative_to(out) for p in outputs] == sorted(p.with_suffix(".png") for p in paths)
    for p in outputs:
        with Image.open(p) as im:
            im.load()  # each opens, whole
    assert {p: p.stat().st_mtime_ns for p in done} == done  # none restored twice
    rows = [r for r in report(tmp_path / "second.csv") if r["file"].endswith(".jpg")]
    assert sum(r["status"] == "skipped" for r in rows) == len(done)
    assert sum(r["status"] == "restored" for r in rows) == 20 - len(done)
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary file left behind


def test_outputs_that_cannot_be_written_are_reported_and_the_batch_goes_on(tmp_path, ckpt, monkeypatch, capsys):
    for name in ("full", "locked", "fine"):
        images.write_bytes(tmp_path / "in" / name / "p.jpg", images.encode_jpeg(photo(40, 48, 5), 30))
    out = tmp_path / "out"
    (out / "locked").mkdir(parents=True)
    (out / "locked").chmod(0o555)
    write = Path.write_bytes
    mkstemp = files.tempfile.mkstemp

    def disk_full(self: Path, data: bytes) -> int:
        if self.parent == out / "full":
            write(self, data[: len(data) // 2])  # half of it, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(self, data)

    def read_only(*args, dir=None, **kwargs):  # noqa: A002 (mkstemp's own name); as root, chmod does not stop us
        if dir is not None and Path(dir) == out / "locked":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    try:
        code = restore(tmp_path / "in", "-o", out, "-r", "--ckpt", ckpt, "--report", tmp_path / "r.csv")
    finally:
        (out / "locked").chmod(0o755)
    assert code == 1
    err = capsys.readouterr().err
    assert f"cannot write {out / 'full' / 'p.png'} (No space left on device)" in err
    assert f"cannot write {out / 'locked' / 'p.png'} (Permission denied)" in err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["fine/p.png"]  # nothing partial
    rows = {Path(r["file"]).parent.name: r["status"] for r in report(tmp_path / "r.csv")}
    assert rows == {"fine": "restored", "full": "failed", "locked": "failed"}


def test_the_readme_restore_commands(tmp_path, ckpt, monkeypatch, capsys):
    """Every ``pipeline.restore`` command the README shows, as it shows it (with a test model)."""
    monkeypatch.chdir(tmp_path)
    images.write_bytes(Path("photo.jpg"), camera_jpeg(photo(40, 48, 1), 30, orientation=6))
    images.write_bytes(Path("more_photos/a.jpg"), images.encode_jpeg(photo(40, 48, 2), 40))
    images.write_bytes(Path("phone/2024/b.jpg"), camera_jpeg(photo(40, 48, 3), 50))
    commands = [
        shlex.split(line.split("#")[0])[3:]
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith(".venv/bin/python -m pipeline.restore ")
    ]
    assert len(commands) == 2
    for args in commands:
        assert restore(*args, "--ckpt", ckpt) == 0
    out = capsys.readouterr().out
    assert "photo.jpg: 40x48, QF 30 from the JPEG header, turned upright (EXIF orientation 6)" in out
    assert sorted(p.name for p in Path("restored").iterdir()) == ["a.png", "photo.png"]
    with Image.open("web/2024/b.jpg") as im:
        assert im.info["icc_profile"] == icc_profile() and not im.getexif()
    assert [r["status"] for r in report(Path("web.csv"))] == ["restored"]
