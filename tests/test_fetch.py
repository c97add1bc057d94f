"""pipeline.data.fetch against a real HTTP server on 127.0.0.1 (Range support, a connection-cut mode)."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.core.images import encode_png, read_image
from pipeline.data.fetch import DownloadError, download, extract, sha256_file


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range`` unless ``server.ranges`` is False; sends only
    ``server.cut_after`` body bytes of the next response and then drops the connection."""

    server: _Server

    def do_GET(self) -> None:
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng and srv.ranges else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after is not None:
            body, srv.cut_after = body[: srv.cut_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


class _Server(ThreadingHTTPServer):
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]]
    cut_after: int | None = None
    ranges: bool = True

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    for var in ("no_proxy", "NO_PROXY"):  # never send 127.0.0.1 through a proxy set in the environment
        monkeypatch.setenv(var, "*")
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests = {}, []
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def pngs(image_factory) -> dict[str, bytes]:
    return {f"img{i}.png": encode_png(image_factory(24 + 8 * i, 32, seed=i)) for i in range(3)}


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_download_verify_extract(server, pngs, tmp_path, kind):
    members = {f"set/HR/{n}": d for n, d in pngs.items()} | {"set/README.txt": b"hi", "other/x.png": pngs["img0.png"]}
    blob = make_zip(members) if kind == "zip" else make_tgz(members)
    server.files["/set.bin"] = blob  # no telling suffix: the format is read from the content
    dest = tmp_path / "downloads" / "set.bin"
    digest = download(server.url("set.bin"), dest, sha256=sha(blob), size=len(blob), progress=False)
    assert digest == sha(blob) == sha256_file(dest)
    assert not dest.with_name("set.bin.part").exists()
    out = extract(dest, "set/HR/*.png", tmp_path / "out")
    assert sorted(p.name for p in out) == sorted(pngs)
    for p in out:
        assert p.read_bytes() == pngs[p.name]
        assert read_image(p).shape[1] == 32
    # A verified file is not fetched again.
    n = len(server.requests)
    assert download(server.url("set.bin"), dest, sha256=digest, progress=False) == digest
    assert len(server.requests) == n


def test_checksum_mismatch_names_file_and_digests(server, tmp_path):
    server.files["/a.zip"] = blob = make_zip({"a.png": b"x"})
    dest = tmp_path / "a.zip"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as e:
        download(server.url("a.zip"), dest, sha256=wrong, progress=False)
    msg = str(e.value)
    assert "a.zip" in msg and wrong in msg and sha(blob) in msg
    assert list(tmp_path.iterdir()) == []


def test_cut_connection_then_resume(server, tmp_path):
    blob = bytes(range(256)) * 400  # 100 KiB
    server.files["/big.tar"] = blob
    server.cut_after = 30_000
    dest = tmp_path / "big.tar"
    part = tmp_path / "big.tar.part"
    with pytest.raises(DownloadError, match="partial file .* kept.*rerun resumes"):
        download(server.url("big.tar"), dest, sha256=sha(blob), progress=False)
    assert part.stat().st_size == 30_000 and not dest.exists()
    assert download(server.url("big.tar"), dest, sha256=sha(blob), progress=False) == sha(blob)
    assert server.requests[-1] == ("/big.tar", "bytes=30000-")
    assert dest.read_bytes() == blob and not part.exists()


def test_resume_refused_restarts_from_zero(server, tmp_path):
    blob = bytes(range(256)) * 100
    server.files["/f.bin"] = blob
    server.ranges = False  # answers 200 with the whole file to a Range request
    (tmp_path / "f.bin.part").write_bytes(b"garbage that must not be kept")
    assert download(server.url("f.bin"), tmp_path / "f.bin", sha256=sha(blob), progress=False) == sha(blob)
    assert (tmp_path / "f.bin").read_bytes() == blob
    assert server.requests == [("/f.bin", "bytes=29-")]  # the 200 answer itself was used


def test_complete_part_answered_416(server, tmp_path):
    blob = b"0123456789" * 10
    server.files["/g.bin"] = blob
    (tmp_path / "g.bin.part").write_bytes(blob)
    assert download(server.url("g.bin"), tmp_path / "g.bin", sha256=sha(blob), progress=False) == sha(blob)
    assert server.requests == [("/g.bin", f"bytes={len(blob)}-")]


def test_offline_fails_fast_naming_alternatives(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/LIVE1.zip"
    with pytest.raises(DownloadError) as e:
        download(url, tmp_path / "LIVE1.zip", timeout=5, progress=False)
    msg = str(e.value)
    assert url in msg and "data.local" in msg and "data.mirror" in msg
    assert list(tmp_path.iterdir()) == []


def test_http_404_names_url(server, tmp_path):
    with pytest.raises(DownloadError, match="missing.zip: HTTP 404"):
        download(server.url("missing.zip"), tmp_path / "missing.zip", progress=False)


@pytest.mark.parametrize("evil", ["../evil.png", "/abs/evil.png", "set/../../evil.png"])
@pytest.mark.parametrize("make", [make_zip, make_tgz])
def test_path_traversal_rejected(tmp_path, evil, make):
    archive = tmp_path / "evil.archive"
    archive.write_bytes(make({"set/ok.png": b"x", evil: b"y"}))
    out = tmp_path / "deep" / "out"
    with pytest.raises(DownloadError, match="unsafe member path"):
        extract(archive, "*/*.png", out)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "deep" / "evil.png").exists()


def test_corrupt_archive_named(tmp_path, pngs):
    good = make_tgz({f"set/{n}": d for n, d in pngs.items()})
    for name, data in [("cut.tgz", good[: len(good) // 2]), ("cut.zip", make_zip(pngs)[:-40]), ("x.zip", b"no")]:
        archive = tmp_path / name
        archive.write_bytes(data)
        with pytest.raises(DownloadError, match=name):
            extract(archive, "set/*.png", tmp_path / "out")
