"""Inference engines: the same network run by PyTorch, ONNX Runtime or OpenVINO.

Every engine maps one tile, RGB uint8 (1, H, W, 3) with H and W multiples of 8, and a QF to
the restored tile, float32 (1, H, W, 3) in [0, 1]; colour conversion and clamping happen
inside the graph. It also carries the model's learned QF estimator (``estimate``), so that a
caller never needs the model and an engine that match.

ONNX Runtime and OpenVINO run the ONNX graphs exported from the self-describing checkpoint
(``export.py``: the network with the QF as an input and any height and width, and its estimator
head), cached next to the checkpoint under its content hash, so a new checkpoint gets new graphs
and an old one is never re-exported. With the graphs cached, these engines never import torch
(``restore`` starts in a fraction of a second). Both runtimes are optional: without them
everything runs on torch.
"""

from __future__ import annotations

import collections
import importlib.util
import itertools
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.files import sha256_file
from pipeline.restoration.options import ENGINES as ENGINE_CHOICES
from pipeline.restoration.options import PRECISIONS

# bf16 (OpenVINO) changed LIVE1 PSNR by at most 0.0007 dB at any QF 10-90 and ran 1.9x faster than
# f32 on a CPU with AVX-512 BF16 (benchmarks/results/): ``auto`` takes it where the CPU runs bf16
# natively. Evaluation keeps f32 (params evaluate.precision) so that scores do not depend on the CPU.
# Fastest first, as measured on a 2-core CPU (benchmarks/bench_restore.py): auto takes the first
# one installed. On CUDA, torch is the only GPU engine here.
CPU_ORDER = ("openvino", "onnxruntime", "torch")
RunFn = Callable[[np.ndarray, float], np.ndarray]
RunAllFn = Callable[[Iterable[np.ndarray], float], Iterator[np.ndarray]]
EstimateFn = Callable[[np.ndarray], "float | None"]
MAX_IN_FLIGHT = 4  # tiles restored at once at most (each holds its activations in memory)
ModelFn = Callable[[], Any]  # loads the torch model when it is needed (a graph to export, the torch engine)


class EngineError(ValueError):
    """An engine that is unknown, not installed, or not usable on this device."""


@dataclass(frozen=True)
class Engine:
    """A ready-to-run network: ``run(tile_u8, qf)`` and ``estimate(image_u8)``. One tile size
    suits them all: 1024 was as fast as 768 and faster than 512 and 256 for every engine."""

    name: str
    run: RunFn
    estimate: EstimateFn
    precision: str = "f32"
    note: str = ""  # why the precision asked for was not the one that runs (e.g. no int8 graph)
    run_all: RunAllFn | None = None  # several tiles at once, where the runtime does that faster

    def map(self, tiles: Iterable[np.ndarray], qf: float) -> Iterator[np.ndarray]:
        """Every tile restored, in order; the tiles are read from ``tiles`` as they are needed."""
        if self.run_all is not None:
            return self.run_all(tiles, qf)
        return (self.run(tile, qf) for tile in tiles)

    @property
    def label(self) -> str:
        label = self.name if self.name == "torch" else f"{self.name} {self.precision}"
        return f"{label} ({self.note})" if self.note else label


def installed(name: str) -> bool:
    """Whether engine ``name`` can run here (its runtime is importable)."""
    if name == "torch":
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def resolve(name: str, device: str = "cpu") -> str:
    """The engine ``name`` means on ``device`` (``cpu``, ``cuda``, ``cuda:N``): auto -> the
    fastest installed (CUDA: torch)."""
    if name not in ENGINE_CHOICES:
        raise EngineError(f"engine {name!r} is not one of {', '.join(ENGINE_CHOICES)}")
    on_gpu = str(device) != "cpu"
    if name == "auto":
        return "torch" if on_gpu else next(n for n in CPU_ORDER if installed(n))
    if name != "torch" and on_gpu:
        raise EngineError(f"engine {name!r} runs on the CPU only; use --engine torch on {device}")
    if not installed(name):
        raise EngineError(f"engine {name!r} is not installed (pip install {name}); torch always is")
    return name


def onnx_path(ckpt: Path) -> Path:
    """Where the ONNX graph of checkpoint ``ckpt`` is cached: beside it, named by its content."""
    return ckpt.with_name(f"{ckpt.stem}.{sha256_file(ckpt)[:16]}.onnx")


def estimator_path(graph: Path) -> Path:
    """The estimator's graph beside the restoration graph ``graph`` (same content hash)."""
    return graph.with_suffix(".estimator.onnx")


def _cached(path: Path | None, export: Callable[[Path], Path | None]) -> Path | None:
    """``path`` when cached, else exported there (or to a temporary folder when its own folder
    is not writable)."""
    if path is not None:
        if path.is_file():
            return path
        try:
            return export(path)
        except OSError:
            pass
    return export(Path(tempfile.mkdtemp(prefix="jpeg-restoration-")) / "model.onnx")


def graphs(ckpt: Path | None, model: ModelFn) -> tuple[Path, Path | None]:
    """The restoration graph and the estimator's graph (None: the model has no estimator head)
    of the checkpoint ``ckpt``: cached beside it, else exported from ``model()``."""
    from_model: dict[str, Any] = {}

    def net() -> Any:
        if "net" not in from_model:
            from_model["net"] = model()
        return from_model["net"]

    def export_graph(path: Path) -> Path:
        from pipeline.restoration.export import export_onnx

        return export_onnx(net(), path)

    def export_estimator(path: Path) -> Path | None:
        from pipeline.restoration.export import export_estimator

        return export_estimator(net(), path)

    graph = _cached(None if ckpt is None else onnx_path(Path(ckpt)), export_graph)
    est = estimator_path(graph)
    if est.is_file():
        return graph, est
    marker = est.with_suffix(".none")  # a model without an estimator head: known without loading it
    if marker.is_file():
        return graph, None
    exported = _cached(est, export_estimator)
    if exported is None:
        marker.touch()
    return graph, exported


def _padded(image: np.ndarray) -> np.ndarray:
    """(1, H', W', 3) uint8, edge-padded to multiples of 8 (as the estimator pads)."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, (-h) % 8), (0, (-w) % 8), (0, 0)), mode="edge")[None]


def _onnxruntime(graph: Path, estimator: Path | None, precision: str) -> tuple[RunFn, EstimateFn | None]:
    import onnxruntime as ort

    if precision != "f32":
        raise EngineError(f"onnxruntime runs at f32 only, not {precision}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])

    def run(tile: np.ndarray, qf: float) -> np.ndarray:
        return session.run(None, {"image": tile, "qf": np.array([qf], np.float32)})[0]

    if estimator is None:
        return run, None
    est = ort.InferenceSession(str(estimator), opts, providers=["CPUExecutionProvider"])
    return run, lambda image: float(est.run(None, {"image": _padded(image)})[0][0])


def cache_dir() -> Path:
    """OpenVINO's cache of compiled graphs (``$XDG_CACHE_HOME/jpeg-restoration/openvino``): a
    graph compiles once per machine, then loads in a fraction of the time."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jpeg-restoration" / "openvino"


def _openvino(graph: Path, estimator: Path | None, precision: str) -> tuple[RunFn, EstimateFn | None, RunAllFn]:
    import openvino as ov

    core = ov.Core()
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        core.set_property({"CACHE_DIR": str(cache_dir())})
    except (OSError, RuntimeError):
        pass  # a read-only home: compile every time
    # OpenVINO silently runs bf16 on CPUs that have it: the hint pins what was measured. An int8
    # graph (quantize.py) carries its precision in its weights; it runs the rest in f32.
    hint = "f32" if precision == "int8" else precision
    config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(str(graph), "CPU", config)
    request = compiled.create_infer_request()

    def run(tile: np.ndarray, qf: float) -> np.ndarray:
        out = request.infer({"image": tile, "qf": np.array([qf], np.float32)})
        return np.array(out[compiled.output(0)])

    streams: list[Any] = []  # the throughput-compiled graph, made when a photo has several tiles

    def run_all(tiles: Iterable[np.ndarray], qf: float) -> Iterator[np.ndarray]:
        """Several tiles at once, each in a stream of its own: one inference scales poorly over
        cores (two cores: 4 tiles of 856x800 in 3.5 s), several at once do not (1.9 s). The next
        tile is read while the previous ones run; results come back in order."""
        tiles = iter(tiles)
        first = next(tiles, None)
        second = next(tiles, None) if first is not None else None
        if second is None:  # one tile: the latency-compiled graph uses every core on it
            if first is not None:
                yield run(first, qf)
            return
        if not streams:
            streams.append(core.compile_model(str(graph), "CPU", {**config, "PERFORMANCE_HINT": "THROUGHPUT"}))
        compiled_t = streams[0]
        n = max(1, min(MAX_IN_FLIGHT, compiled_t.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        free = [compiled_t.create_infer_request() for _ in range(n)]
        pending: collections.deque = collections.deque()
        q = np.array([qf], np.float32)
        try:
            for tile in itertools.chain([first, second], tiles):
                if not free:
                    req, _ = pending.popleft()
                    req.wait()
                    yield np.array(req.get_output_tensor(0).data)
                    free.append(req)
                req = free.pop()
                req.start_async({"image": tile, "qf": q})
                pending.append((req, tile))  # the tile stays alive while its request runs
            while pending:
                req, _ = pending.popleft()
                req.wait()
                yield np.array(req.get_output_tensor(0).data)
        finally:  # stopped early (the app's cancel): no request is left running
            for req, _ in pending:
                req.wait()

    if estimator is None:
        return run, None, run_all
    # The estimator always runs in f32: the decision compares its reading with thresholds.
    est = core.compile_model(str(estimator), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
    est_request = est.create_infer_request()
    return run, lambda image: float(est_request.infer({"image": _padded(image)})[est.output(0)][0]), run_all


def int8_path(graph: Path) -> Path:
    """The int8 graph (OpenVINO IR, made by ``python -m pipeline.quantize``) beside ``graph``;
    its report (``.json``: the drop it costs per QF on held-out training photos) beside it."""
    return graph.with_suffix(".int8.xml")


INT8_FREE_DB = 0.02  # the most PSNR an int8 graph may cost at any QF for ``auto`` to take it


def int8_report(graph: Path) -> dict[str, Any] | None:
    """The int8 graph's quantization report, or None when there is no int8 graph."""
    path = int8_path(graph)
    try:
        return json.loads(path.with_suffix(".json").read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux), empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def pick_precision(asked: str, name: str, graph: Path | None) -> tuple[str, str]:
    """The precision engine ``name`` runs ``graph`` at, and a note when it is not the one asked
    for. auto: int8 where its graph cost at most ``INT8_FREE_DB`` at every QF (its report) and
    the CPU has int8 dot products (VNNI, AMX), else bf16 where the CPU runs it natively, else f32.
    int8 asked for where it cannot run falls back the same way, saying why."""
    if name != "openvino":
        if asked == "int8":
            return "f32", f"int8 needs OpenVINO; {name} runs f32"
        return ("f32", "") if asked == "auto" else (asked, "")
    report = int8_report(graph) if graph is not None else None
    fallback = "bf16" if native_bf16() else "f32"
    if asked == "int8":
        if report is not None:
            return "int8", ""
        how = (
            "python -m pipeline.quantize"
            if importlib.util.find_spec("nncf")
            else "pip install nncf, then python -m pipeline.quantize"
        )
        return fallback, f"no int8 graph for this model ({how}); {fallback} instead"
    if asked != "auto":
        return asked, ""
    native_int8 = bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})
    if report is not None and native_int8 and report.get("worst_drop_db", 1e9) <= INT8_FREE_DB:
        return "int8", ""
    return fallback, ""


def cpu_capabilities() -> set[str]:
    """OpenVINO's CPU optimization capabilities here (e.g. BF16, INT8), empty without OpenVINO."""
    try:
        import openvino as ov
    except ImportError:
        return set()
    return set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (AVX-512 BF16 or AMX)."""
    return "BF16" in cpu_capabilities()


def build_engine(
    name: str, model: Any = None, ckpt: Path | str | None = None, precision: str = "f32", device: str = "cpu"
) -> Engine:
    """Engine ``name`` (see ``resolve``) for the network of checkpoint ``ckpt`` (the graphs'
    cache key) on ``device``. ``model``: the torch model, or a function returning it, or None to
    load it from ``ckpt`` only when needed (the torch engine; a graph to export; a model without
    an estimator graph). ``precision``: f32, bf16 or int8 for OpenVINO, or auto (``pick_precision``)."""
    if precision not in PRECISIONS:
        raise EngineError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    load = _loader(model, ckpt, device)
    name = resolve(name, _device_of(model, device))
    if name == "torch":
        from pipeline.restoration.export import torch_estimate, torch_run

        net = load()
        note = "int8 needs OpenVINO; torch runs f32" if precision == "int8" else ""
        return Engine("torch", torch_run(net), torch_estimate(net), "f32", note)
    graph, estimator = graphs(None if ckpt is None else Path(ckpt), load)
    precision, note = pick_precision(precision, name, graph)
    runs = int8_path(graph) if precision == "int8" else graph
    if name == "onnxruntime":
        run, estimate = _onnxruntime(runs, estimator, precision)
        run_all = None
    else:
        run, estimate, run_all = _openvino(runs, estimator, precision)
    if estimate is None:  # no estimator head (dncnn, fbcnn): the model's own forward pass estimates
        from pipeline.restoration.export import torch_estimate

        estimate = _lazy(lambda: torch_estimate(load()))
    return Engine(name, run, estimate, precision, note, run_all)


def _device_of(model: Any, device: str) -> str:
    """The device a given torch model sits on (``device`` when there is none yet)."""
    params = getattr(model, "parameters", None)
    if params is None:
        return str(device)
    return str(next(params()).device)


def _loader(model: Any, ckpt: Path | str | None, device: str) -> ModelFn:
    """A function returning the torch model (in eval mode), loading it at most once."""
    cache: dict[str, Any] = {}

    def load() -> Any:
        if "net" not in cache:
            if model is not None and hasattr(model, "parameters"):
                cache["net"] = model
            elif model is not None:
                cache["net"] = model()
            elif ckpt is not None:
                from pipeline.models.checkpoint import load_checkpoint

                cache["net"] = load_checkpoint(ckpt, device)[0]
            else:
                raise EngineError("build_engine needs a model or a checkpoint")
            cache["net"].eval()
        return cache["net"]

    return load


def _lazy(make: Callable[[], EstimateFn]) -> EstimateFn:
    """An estimator built on its first call."""
    built: list[EstimateFn] = []

    def estimate(image: np.ndarray) -> float | None:
        if not built:
            built.append(make())
        return built[0](image)

    return estimate
