"""Real-browser tests: `streamlit run app.py` served on 127.0.0.1, loaded in headless Chromium.

Chromium's one-shot ``--dump-dom``/``--screenshot`` cannot wait for a Streamlit page: with
``--virtual-time-budget`` the app's server pings time out in virtual time and the page never
leaves "connecting". So the test drives Chromium over the DevTools protocol (a websocket, with
the ``websockets`` package Streamlit itself depends on) and waits for the restored image.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import camera_jpeg
from websockets.sync.client import connect

from pipeline.core import images
from pipeline.mlops import registry, tracking
from pipeline.models import build_model
from pipeline.models.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found (apt-get install chromium)")

# What the page shows, read in the browser: image captions, loaded <img>s, the script's state.
PAGE_STATE = """JSON.stringify({
  captions: [...document.querySelectorAll('[data-testid="stImageCaption"]')].map(e => e.innerText),
  loaded: [...document.querySelectorAll('[data-testid="stImage"] img')]
    .filter(i => i.complete && i.naturalWidth).length,
  state: document.querySelector('[data-testid="stApp"]')?.dataset.testScriptState ?? null,
  errors: document.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]').length,
})"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


@pytest.fixture
def server(mlflow_uri: str, tmp_path: Path) -> Iterator[str]:
    """The app on a free port, with a tiny model as the registry's champion."""
    ckpt = tmp_path / "ckpt" / "model.pt"
    save_checkpoint(ckpt, "qacnet", {"width": 8, "mid_blocks": 1}, build_model("qacnet", width=8, mid_blocks=1), {})
    with tracking.start_run("train", "jpeg-restoration") as run:
        tracking.log_artifact(ckpt, "model/artifacts")  # where a pyfunc model keeps it
    registry.register_version("jpeg-restoration", run.info.run_id, {}, aliases=("champion",))
    port = free_port()
    cmd = [
        str(ROOT / ".venv/bin/streamlit"),
        "run",
        "app.py",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
    ]
    log = open(tmp_path / "streamlit.log", "w")  # noqa: SIM115 (closed below, after the process)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: http_get(url + "_stcore/health") == "ok", 60, "the Streamlit server", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture
def devtools(tmp_path: Path) -> Iterator:
    """A headless Chromium page, as a function sending one DevTools command and returning its result."""
    profile = tmp_path / "chromium"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,2000",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        active = profile / "DevToolsActivePort"
        port = wait_for(lambda: active.is_file() and active.read_text().split("\n")[0], 30, "Chromium", proc)
        targets = json.loads(wait_for(lambda: http_get(f"http://127.0.0.1:{port}/json/list"), 30, "a page"))
        page = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        with connect(page, max_size=None) as ws:
            ids = iter(range(1, 1_000_000))

            def send(method: str, **params) -> dict:
                msg_id = next(ids)
                ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
                while True:  # skip events until our answer
                    reply = json.loads(ws.recv(timeout=60))
                    if reply.get("id") == msg_id:
                        assert "error" not in reply, reply
                        return reply["result"]

            yield send
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def page_state(send) -> dict:
    return json.loads(send("Runtime.evaluate", expression=PAGE_STATE, returnByValue=True)["result"]["value"])


def test_default_page_shows_a_restored_sample_photo(server, devtools, tmp_path):
    devtools("Page.navigate", url=server)

    def restored_and_idle() -> dict | None:
        state = page_state(devtools)
        done = state.get("state") == "notRunning" and "Restored (QF 20)" in state["captions"] and state["loaded"] >= 4
        return state if done else None

    state = wait_for(restored_and_idle, 90, "the restored photo in the browser")
    assert state["errors"] == 0
    assert any(c.startswith("Input: chelsea_q20.jpg") for c in state["captions"])
    html = devtools("Runtime.evaluate", expression="document.documentElement.outerHTML", returnByValue=True)
    assert "Download the restored PNG" in html["result"]["value"]

    shot = base64.b64decode(devtools("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "page.png").write_bytes(shot)  # kept by pytest, to look at when this fails
    rgb = images.decode_image(shot, "screenshot.png").rgb
    assert rgb.shape[1] == 1400 and rgb.shape[0] > 1000  # the window, less what the browser keeps
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 1000  # a photo, not a blank or flat page


def evaluate(send, expression: str):
    return send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")


def test_batch_view_restores_three_uploads(server, devtools, tmp_path, image_factory):
    """Three photos uploaded through the page's file input: a table of decisions and one zip; no
    Deploy button (.streamlit/config.toml's toolbarMode)."""
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"photo{i}.jpg")
        images.write_bytes(paths[-1], camera_jpeg(image_factory(48, 64, i), 30, orientation=(1, 6, 3)[i]))
    devtools("Page.navigate", url=server)
    labels = """document.querySelectorAll('[data-testid="stRadio"] label')"""
    radio = f"[...{labels}].find(l => l.innerText.includes('Upload'))"
    wait_for(lambda: evaluate(devtools, f"!!({radio})"), 60, "the Photo radio")
    assert evaluate(devtools, "document.querySelector('[data-testid=\"stAppDeployButton\"]') === null")
    evaluate(devtools, f"{radio}.click()")
    picker = 'input[data-testid="stFileUploaderDropzoneInput"]'
    wait_for(lambda: evaluate(devtools, f"!!document.querySelector('{picker}')"), 60, "the file uploader")
    root = devtools("DOM.getDocument")["root"]["nodeId"]
    node = devtools("DOM.querySelector", nodeId=root, selector=picker)["nodeId"]
    devtools("DOM.setFileInputFiles", files=[str(p) for p in paths], nodeId=node)

    done = """JSON.stringify({
      state: document.querySelector('[data-testid="stApp"]')?.dataset.testScriptState ?? null,
      table: document.querySelectorAll('[data-testid="stDataFrame"]').length,
      download: [...document.querySelectorAll('[data-testid="stDownloadButton"] button')].map(b => b.innerText),
      errors: document.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]').length,
    })"""

    def batch_shown() -> dict | None:
        state = json.loads(evaluate(devtools, done))
        ready = state["state"] == "notRunning" and state["table"] and state["download"]
        return state if ready else None

    state = wait_for(batch_shown, 120, "the batch table and its zip in the browser")
    (tmp_path / "batch.png").write_bytes(base64.b64decode(devtools("Page.captureScreenshot", format="png")["data"]))
    assert state["errors"] == 0 and state["download"] == ["Download 3 restored photos (zip)"]
    text = evaluate(devtools, "document.body.innerText")
    assert "3 photos" in text and "3 of these photos carry a GPS position" in text
