"""The benchmark scripts run on the CPU and write what they print (figures are never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import smooth_image

from benchmarks import bench_loader, bench_models
from pipeline.core import images


def test_bench_models_rows_per_variant(tmp_path: Path, one_torch_thread: None) -> None:
    out = tmp_path / "bench.json"
    args = [
        "--device",
        "cpu",
        "--archs",
        "qacnet,dncnn",
        "--train-batch",
        "2,4",
        "--patch",
        "32",
        "--size",
        "64x48",
        "--repeats",
        "1",
        "--json",
        str(out),
    ]
    assert bench_models.main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["arch"], r["batch"]) for r in rows] == [("qacnet", 2), ("qacnet", 4), ("dncnn", 2), ("dncnn", 4)]
    for r in rows:
        assert r["compile"] == "none" and r["train_patches_per_s"] > 0 and "error" not in r
    assert [("infer_ms" in r) for r in rows] == [True, False, True, False]  # inference once per mode


def test_bench_models_budget_skips_the_rest(tmp_path: Path, one_torch_thread: None) -> None:
    out = tmp_path / "bench.json"
    args = [
        "--device",
        "cpu",
        "--archs",
        "dncnn,qacnet",
        "--train-batch",
        "2",
        "--patch",
        "32",
        "--size",
        "32x32",
        "--repeats",
        "1",
        "--budget-s",
        "0.001",
        "--json",
        str(out),
    ]
    assert bench_models.main(args) == 0
    got = json.loads(out.read_text())
    assert [r["arch"] for r in got["rows"]] == ["dncnn"] and got["skipped"] == ["qacnet/none/b2"]


def test_bench_loader_counts_patches(tmp_path: Path, capsys) -> None:
    for i in range(3):
        images.write_png(tmp_path / "imgs" / f"{i}.png", smooth_image(160, 170, seed=i))
    out = tmp_path / "loader.json"
    assert bench_loader.main([str(tmp_path / "imgs"), "--workers", "0", "--seconds", "0.5", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["images"] == 3 and got["rows"][0]["patches_per_s"] > 0
    assert "workers   0:" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_restore_end_to_end_against_a_revision(tmp_path: Path) -> None:
    """The network per engine, ``restore`` end to end for this code and a git revision (HEAD, in
    a temporary worktree) with the champion of a fresh registry, and the split of the time."""
    from benchmarks import bench_restore
    from pipeline.models import build_model
    from pipeline.models.checkpoint import save_checkpoint
    from pipeline.restoration.engines import installed

    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, "qacnet", {"width": 8, "mid_blocks": 1}, build_model("qacnet", width=8, mid_blocks=1), {})
    engines = ",".join(e for e in ("torch", "onnxruntime") if installed(e))
    out = tmp_path / "bench.json"
    args = [
        "--ckpt",
        str(ckpt),
        "--engines",
        engines,
        "--precisions",
        "f32",
        "--sizes",
        "200x136",
        "--rev",
        "HEAD",
        "--repeats",
        "1",
        "--json",
        str(out),
    ]
    assert bench_restore.main(args) == 0
    got = json.loads(out.read_text())
    assert [r["engine"] for r in got["network"]][0] == "torch" and all(
        r["max_diff_grey"] < 0.01 for r in got["network"]
    )
    rows = got["end_to_end"]
    assert [(r["code"], r["args"]) for r in rows][:2] == [("this code", ""), ("HEAD", "")]
    measured = Path(bench_restore.TIME).is_file()  # GNU time gives each command's own peak
    assert all("error" not in r and r["seconds"] > 0 and ((r["peak_rss_MiB"] or 0) > 0 or not measured) for r in rows)
    assert set(got["help_seconds"]) == {"this code", "HEAD"}
    assert {"start_up", "decode", "decision", "network", "encoding"} <= set(got["split"]), got["split"]


def test_bench_formats_says_what_each_format_keeps(tmp_path: Path, capsys) -> None:
    import torch

    from benchmarks import bench_formats
    from pipeline.models import build_model
    from pipeline.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model("qacnet", width=8, mid_blocks=1)
    for name, p in model.named_parameters():
        if "film" in name or "tail" in name:  # both start at zero (the identity): a model that changes the photo
            torch.nn.init.normal_(p, std=0.5)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, "qacnet", {"width": 8, "mid_blocks": 1}, model, {})
    for i in range(2):
        images.write_png(tmp_path / "refs" / f"{i}.png", smooth_image(64, 80, seed=i))
    out = tmp_path / "formats.json"
    args = ["--live1", str(tmp_path / "refs"), "--qfs", "20,40", "--ckpt", str(ckpt), "--json", str(out)]
    assert bench_formats.main(args) == 0
    got = json.loads(out.read_text())
    assert got["images"] == 2 and got["quality"] == 95 and set(got["qfs"]) == {"20", "40"}
    for row in got["qfs"].values():
        assert row["png"]["gain"] == row["webp"]["gain"]  # both lossless
        assert row["jpeg"]["bytes"] < row["png"]["bytes"]
    assert "JPEG 95 keeps" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_serve_rows_per_engine_and_clients(tmp_path: Path) -> None:
    """Two real servers (torch and the default engine) on 127.0.0.1, a few requests each."""
    from benchmarks import bench_serve
    from pipeline.models import build_model
    from pipeline.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, "qacnet", {"width": 8, "mid_blocks": 1}, build_model("qacnet", width=8, mid_blocks=1), {})
    out = tmp_path / "serve.json"
    args = ["--ckpt", str(ckpt), "--clients", "1,2", "--requests", "2", "--size", "96x64", "--json", str(out)]
    assert bench_serve.main(args) == 0
    got = json.loads(out.read_text())
    assert [(r["engine"], r["clients"]) for r in got["rows"]] == [("torch", 1), ("torch", 2), ("auto", 1), ("auto", 2)]
    assert all(r["errors"] == 0 and r["req_per_s"] > 0 and r["p95_s"] >= r["p50_s"] for r in got["rows"])
    assert set(got["stamp"]) >= {"cpu", "cores", "load_average", "date", "commit"}
    assert out.with_suffix(".md").read_text().startswith("# bench_serve\n")


def test_bench_detector_prints_its_cost(tmp_path: Path, capsys) -> None:
    """The shipped detector on a generated resized JPEG: its reading's time, the decision with and
    without it, and the stage's time from the file's record."""
    from benchmarks import bench_detector

    out = tmp_path / "detector.json"
    assert bench_detector.main(["--sizes", "768x512", "--repeats", "1", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    row = got["rows"]["768x512"]
    assert row["reading_s"] > 0 and row["detector_s"] > 0 and row["decision"].startswith("JPEG history")
    assert got["training_seconds"]["total"] > 0
    assert "training (train_detector" in capsys.readouterr().out
