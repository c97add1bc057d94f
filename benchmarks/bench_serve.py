"""The served model on this machine: requests per second and latency per engine.

    python -m benchmarks.bench_serve [--ckpt models/pretrained/model.pt] [--engines torch,auto]
        [--clients 1,4] [--requests 16] [--size 768x512] [--qf 30] [--json FILE]

For each engine the checkpoint is saved as the registry saves it (an MLflow pyfunc model whose
``model_config`` names the engine; ``auto`` is the default: the fastest installed, bf16 where the
CPU runs it natively) and served by ``mlflow models serve`` on 127.0.0.1, one worker. After a
warm-up request, ``--requests`` requests of one photo-like JPEG (``--size``, at ``--qf``) are
sent by each number of concurrent ``--clients``: requests/s over the wall time, and the p50 and
p95 latency. Figures are printed and written (benchmarks/results/), never asserted.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.bench_restore import photo
from benchmarks.stamp import Results

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: bytes) -> tuple[int, float]:
    """(HTTP status, seconds) of one request."""
    t = time.perf_counter()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.perf_counter() - t


class Server:
    """``mlflow models serve`` of a model (a folder or a models:/ URI) on a free port, stopped on exit."""

    def __init__(self, model: str | Path, log: Path) -> None:
        self.port, self.log = _free_port(), log
        bin_dir = str(Path(sys.executable).parent)  # uvicorn, started by mlflow, lives beside python
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            str(model),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-w",
            "1",
        ]
        with open(log, "w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, seconds: float = 300) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow models serve did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.5)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()


def load(url: str, body: bytes, clients: int, requests: int) -> dict:
    """``requests`` requests from ``clients`` threads: requests/s and latency percentiles."""
    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = list(pool.map(lambda _: _post(url, body), range(requests)))
    wall = time.perf_counter() - t
    bad = [s for s, _ in done if s != 200]
    lat = np.array([s for _, s in done])
    return {
        "clients": clients,
        "requests": requests,
        "errors": len(bad),
        "req_per_s": requests / wall,
        "p50_s": float(np.percentile(lat, 50)),
        "p95_s": float(np.percentile(lat, 95)),
    }


def serve_engine(ckpt: Path, engine: str, body: bytes, clients: list[int], requests: int, tmp: Path) -> list[dict]:
    from pipeline.mlops.pyfunc import save_pyfunc
    from pipeline.restoration.options import RestoreOptions

    folder = save_pyfunc(ckpt, tmp / f"model_{engine}", options=RestoreOptions(engine=engine))
    with Server(folder, tmp / f"serve_{engine}.log") as server:
        server.wait()
        status, warm = _post(f"{server.url}/invocations", body)  # loads the engine, compiles the graph
        if status != 200:
            raise RuntimeError(f"{engine}: the warm-up request failed with HTTP {status}")
        return [
            {"engine": engine, "warmup_s": warm, **load(f"{server.url}/invocations", body, c, requests)}
            for c in clients
        ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", type=Path, default=ROOT / "models" / "pretrained" / "model.pt")
    ap.add_argument("--engines", default="torch,auto", help="engines to serve with (RestoreOptions.engine)")
    ap.add_argument("--clients", default="1,4")
    ap.add_argument("--requests", type=int, default=16, help="requests per engine and number of clients")
    ap.add_argument("--size", default="768x512")
    ap.add_argument("--qf", type=int, default=30)
    ap.add_argument("--json", type=Path, help="write the results here (default: benchmarks/results/bench_serve.json)")
    args = ap.parse_args(argv)
    import cv2

    w, h = map(int, args.size.split("x"))
    ok, jpeg = cv2.imencode(".jpg", photo(w, h)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, args.qf])
    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(jpeg).decode()]]}})
    clients = [int(c) for c in args.clients.split(",")]
    res = Results("bench_serve", args.json)
    res.print(f"mlflow models serve, one worker; {w}x{h} JPEG at QF {args.qf}; {args.requests} requests per row")
    res.print(f"{'engine':>8} {'clients':>7} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'errors':>6} {'x torch':>8}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            rows += serve_engine(args.ckpt, engine, body.encode(), clients, args.requests, Path(tmp))
            for r in rows[-len(clients) :]:
                base = next(
                    (b["req_per_s"] for b in rows if b["engine"] == "torch" and b["clients"] == r["clients"]), None
                )
                ratio = f"{r['req_per_s'] / base:8.2f}" if base else f"{'-':>8}"
                res.print(
                    f"{r['engine']:>8} {r['clients']:7d} {r['req_per_s']:7.2f} {r['p50_s']:7.2f} "
                    f"{r['p95_s']:7.2f} {r['errors']:6d} {ratio}"
                )
    res.data = {"size": [w, h], "qf": args.qf, "rows": rows}
    res.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
