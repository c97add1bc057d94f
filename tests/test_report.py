"""stages.report and pipeline.evaluation.reporting: the report from fixture metrics, published rows,
MLflow; the ablation table (pipeline.evaluation.experiments, python -m pipeline.ablations)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import params
from pipeline.core import images
from pipeline.evaluation import experiments, reporting
from pipeline.evaluation import results as results_mod
from pipeline.mlops import pyfunc, registry, tracking
from pipeline.restoration.options import RestoreOptions
from stages import report as stage

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "dvc_exp_show.json"
KEYS = ("psnr", "ssim", "psnrb", "psnr_y", "ssim_y", "psnrb_y")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # anything MLflow writes relative to the cwd stays in tmp_path


def scores(psnr: float, gain: float | None = None) -> dict:
    out = dict(zip(KEYS, (psnr, 0.8, psnr - 1.0, psnr + 0.5, 0.85, psnr - 0.5), strict=True))
    return out if gain is None else out | {"gain": gain}


def entry(jpeg: float, blind: float, header: float) -> dict:
    return {
        "n": 3,
        "jpeg": scores(jpeg),
        "blind": scores(jpeg + blind, blind),
        "header": scores(jpeg + header, header),
        "qf_est_mae": 1.25,
    }


def write_inputs(root: Path, run_id: str | None) -> None:
    """What the train and evaluate stages write: metrics, the gain CSV, a sparse train log, crops."""
    results = {
        "LIVE1": {
            "10": entry(25.69, 1.5, 1.6),
            "20": entry(28.06, 1.2, 1.3),
            "50": entry(31.0, 0.8, 0.9),
            "90": entry(36.86, -0.05, 0.02),
        },
        "sample_test": {"10": entry(26.0, 1.0, 1.1), "30": entry(30.0, 0.7, 0.75)},
    }
    model = {"arch": "qacnet", "params": 1_234_567, "run_id": run_id, "steps": 200, "checkpoint": "models/m.pt"}
    metrics = results_mod.build(model, RestoreOptions().as_dict(), results, ["LIVE1"], [10, 20])
    reports = root / "reports"
    (reports / "crops").mkdir(parents=True)
    (reports / "evaluation.json").write_text(json.dumps(metrics))
    csv = ["set,qf,gain_blind,gain_header"]
    csv += [f"{s},{q},{r['blind']['gain']},{r['header']['gain']}" for s, by in results.items() for q, r in by.items()]
    (reports / "gain_vs_qf.csv").write_text("\n".join(csv) + "\n")
    log = ["step,loss,lr,patches_per_s,val_psnr,val_psnr_jpeg,val_gain"]
    log += [f"{s},{0.1 / (1 + s / 50):.4f},0.0004,900,,," for s in range(0, 200, 10)]
    log += ["100,,,,27.1,26.0,1.1", "200,,,,27.4,26.0,1.4"]
    (reports / "train_log.csv").write_text("\n".join(log) + "\n")
    crop = np.zeros((16, 48, 3), np.uint8)
    images.write_png(reports / "crops" / "sample_test_qf10_astronaut.png", crop)
    images.write_png(reports / "crops" / "sample_test_qf20_astronaut.png", crop)  # not a report QF


@pytest.fixture(scope="module")
def base_params() -> params.Params:
    return params.load(ROOT / "params.yaml")


@pytest.fixture
def exp_rows() -> dict:
    return experiments.parse(json.loads(FIXTURE.read_text()))


def paths(root: Path) -> stage.Paths:
    """The report stage's paths as dvc.yaml passes them, under ``root``."""
    r = root / "reports"
    return stage.Paths(
        r / "evaluation.json",
        r / "gain_vs_qf.csv",
        r / "train_log.csv",
        r / "crops",
        ROOT / "reference" / "published.yaml",
        r / "report.md",
        r / "reporting.html",
        r / "plots",
    )


def test_published_yaml():
    published = yaml.safe_load((ROOT / "reference" / "published.yaml").read_text())
    for set_name in ("LIVE1", "BSDS500"):
        rows = published["sets"][set_name]
        assert all({"method", "kind", "params", "source", "results"} <= set(r) for r in rows)
        assert rows[0]["method"] == "JPEG input" and rows[0]["source"] == "reproduced here"
        assert all(isinstance(q, int) and "psnr" in v for r in rows for q, v in r["results"].items())
    live1 = {r["method"]: r for r in published["sets"]["LIVE1"]}
    assert live1["FBCNN (ICCV 2021)"]["results"][10] == {"psnr": 27.77, "ssim": 0.803, "psnrb": 27.51}
    assert live1["JDEC (CVPR 2024)"]["results"][90] == {"psnr": 38.72}
    assert live1["JPEG input"]["results"][40]["psnrb"] == 28.83


def test_parse_experiments_fixture(exp_rows):
    """Finished experiments only, each with its headline metrics and only what it changed
    relative to the commit it started from."""
    (base,) = exp_rows["baselines"]
    assert base["name"] == "master" and base["rev"] == "fe5ede5" and base["metrics"]["primary"] == pytest.approx(2.3)
    rows = exp_rows["finished"]
    assert [r["name"] for r in rows] == ["dncnn", "one-stage", "fft-up"] and {r["baseline"] for r in rows} == {"master"}
    by_name = {r["name"]: r for r in rows}
    assert by_name["fft-up"]["changed"] == {"loss.fft_weight": 0.2}
    assert by_name["fft-up"]["metrics"]["primary"] == pytest.approx(2.45)
    assert by_name["one-stage"]["changed"] == {"model.qacnet.num_stages": 1}
    assert by_name["dncnn"]["changed"] == {"model.arch": "dncnn"}
    assert exp_rows["unfinished"] == {"broken": "failed"}  # a failed run lists its baseline's metrics: not shown


def test_changed_keys_are_relative_to_each_experiments_own_baseline():
    """The workspace holds other edits (an earlier `dvc exp run` left its -S there), and two
    commits have experiments: each lists only what it changed from its own commit."""
    shown = json.loads(FIXTURE.read_text())
    shown[0]["data"]["params"]["params.yaml"]["data"]["loss"]["fft_weight"] = 0.1  # the workspace moved on
    older = json.loads(json.dumps(shown[1]))
    older.update(rev="0123456789abcdef", name="older")
    older["data"]["params"]["params.yaml"]["data"]["train"]["steps"] = 50
    exp = older["experiments"][2]  # fft-up, started from the older commit with its 50 steps
    exp["name"] = "fft-up-old"
    exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["train"]["steps"] = 50
    older["experiments"] = [exp]
    parsed = experiments.parse([*shown, older])
    assert [b["name"] for b in parsed["baselines"]] == ["master", "older"]
    by_name = {r["name"]: r for r in parsed["finished"]}
    assert by_name["fft-up"]["changed"] == {"loss.fft_weight": 0.2} and by_name["fft-up"]["baseline"] == "master"
    assert by_name["fft-up-old"]["changed"] == {"loss.fft_weight": 0.2} and by_name["fft-up-old"]["baseline"] == "older"


def test_ablation_table(exp_rows):
    (_, note), (kind, head, rows), (_, unfinished) = experiments.ablation_blocks(exp_rows)
    assert kind == "table" and head[:4] == ["experiment", "rev", "changed params", "primary"]
    table = {r[0]: r for r in rows}
    assert rows[0][0] == "master (baseline)" and rows[0][1:3] == ["fe5ede5", "-"]
    assert "under the commit it started from" in note
    assert table["fft-up"][2] == "loss.fft_weight=0.2" and table["fft-up"][-1] == "+0.150"
    assert "broken" not in table and unfinished == "Not shown, not finished: broken (failed)."
    none = {**exp_rows, "finished": [], "unfinished": {}}
    assert "No finished experiments" in experiments.ablation_blocks(none)[0][1]
    assert experiments.ablation_blocks("`dvc exp show` failed: boom") == [
        ("p", "No ablation table: `dvc exp show` failed: boom")
    ]


def test_ablations_command(exp_rows, monkeypatch, tmp_path, capsys):
    from pipeline import ablations

    monkeypatch.setattr(experiments, "from_dvc", lambda root: exp_rows)  # dvc itself: tests/test_dvc.py
    assert ablations.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## Ablations (dvc exp show)") and "| fft-up | a550626 | loss.fft_weight=0.2 |" in out
    assert ablations.main(["-o", str(tmp_path / "a.md")]) == 0
    assert (tmp_path / "a.md").read_text() == out
    monkeypatch.setattr(experiments, "from_dvc", lambda root: "`dvc exp show` failed: not a DVC repository")
    assert ablations.main([]) == 1


def test_experiments_outside_a_dvc_repo(tmp_path):
    assert experiments.from_dvc(tmp_path).startswith("`dvc exp show` failed")


def test_report_into_training_run(base_params, tmp_path, mlflow_uri):
    with tracking.start_run("train", base_params.tracking.experiment) as train:
        pass
    write_inputs(tmp_path, train.info.run_id)
    s = stage.run(base_params, paths(tmp_path))
    reports = tmp_path / "reports"
    plots = ["gain_vs_qf_LIVE1.png", "gain_vs_qf_sample_test.png", "train_curve.png"]
    assert sorted(Path(p).name for p in s["plots"]) == sorted(plots)
    assert all((reports / "plots" / p).read_bytes().startswith(b"\x89PNG") for p in plots)
    assert s["run_id"] == train.info.run_id and s["logged_into_training_run"] and s["crops"] == 1
    assert s["negative_gains"] == [
        "LIVE1 at QF 90: restoring (QF estimated from the pixels (blind)) makes the photos 0.050 dB worse (PSNR) "
        "than the input."
    ]

    md = (reports / "report.md").read_text()
    assert "| QF | method | kind | params | PSNR | SSIM | PSNR-B | PSNR (Y) | gain (dB) | source |" in md
    assert "| 10 | ours, blind | blind (QF estimated) | 1.23M | 27.19 | 0.8000 | 26.19 | 27.69 | +1.500 |" in md
    assert "| 10 | FBCNN (ICCV 2021) | blind, predicts QF | 71.9M | 27.77 | 0.803 | 27.51 | - | +2.08 |" in md
    assert "| 10 | JPEG input | - | - | 25.69 | 0.743 | 24.20 | - | - | reproduced here |" in md
    assert "| 90 | JDEC (CVPR 2024) |" in md and "JDEC paper, Table 1 |" in md
    assert md.count("DnCNN (per channel)") == 2  # LIVE1 QF10 and QF20: only QFs both have
    assert "| 50 | GRL" not in md and "BSDS500" not in md.split("## Results")[1].split("## Negative")[0]
    assert "- LIVE1 at QF 90: restoring (QF estimated from the pixels (blind)) makes the photos 0.050 dB worse" in md
    assert "| set | QF10 | QF20 | QF30 | QF50 | QF90 |" in md and "| sample_test | 1.25 | - | 1.25 | - | - |" in md
    assert "crops/sample_test_qf10_astronaut.png" in md and "qf20" not in md
    assert "(plots/gain_vs_qf_LIVE1.png)" in md and "(plots/train_curve.png)" in md
    assert "Ablations" not in md  # python -m pipeline.ablations: a stage cannot list experiments finished later

    page = (reports / "reporting.html").read_text()
    assert page.count("src='data:image/png;base64,") == 4  # two gain plots, the train curve, one crop
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page)
    assert (
        "<th>PSNR-B</th>" in page
        and "FBCNN / GRL tables" in page
        and "<li>LIVE1 at QF 90: restoring (QF estimated" in page
    )

    client = tracking.init_store()
    assert {a.path for a in client.list_artifacts(train.info.run_id, "report")} >= {
        "report/report.md",
        "report/reporting.html",
    }
    logged = {a.path for a in client.list_artifacts(train.info.run_id, "report/plots")}
    assert logged == {f"report/plots/{p}" for p in plots}


def test_report_without_training_run(base_params, tmp_path, mlflow_uri):
    write_inputs(tmp_path, "0123456789abcdef")  # trained against another store: not found here
    (tmp_path / "reports" / "train_log.csv").unlink()
    s = stage.run(base_params, paths(tmp_path))
    assert not s["logged_into_training_run"] and s["run_id"] != "0123456789abcdef"
    assert not (tmp_path / "reports" / "plots" / "train_curve.png").exists()
    md = (tmp_path / "reports" / "report.md").read_text()
    assert "No training log" in md
    run = tracking.init_store().get_run(s["run_id"])
    assert run.data.tags["train_run_id"] == "0123456789abcdef" and run.data.tags["stage"] == "report"


def test_main_without_metrics(tmp_path, capsys):
    args = [f"--{k.replace('_', '-')}={v}" for k, v in vars(paths(tmp_path)).items()]
    assert stage.main([*args, "--params", str(ROOT / "params.yaml")]) == 1
    assert "run the evaluate stage first" in capsys.readouterr().err


def rw_case(case: str, qf: int | None, gain: float, best: tuple[int, float] | None = None) -> dict:
    best_qf, best_gain = best or (None, None)
    return {
        "case": case,
        "title": f"title of {case}",
        "qf": qf,
        "n": 2,
        "psnr_in": 30.0,
        "psnr_out": 30.0 + gain,
        "gain": gain,
        "qf_used_mean": qf,
        "qf_abs_error": 0.0 if qf else None,
        "unchanged": 0.0 if qf else 1.0,
        "sources": {"pixels": 2} if qf else {"none": 2},
        "best_qf": best_qf,
        "best_gain": best_gain,
        "share": gain / best_gain if best_gain else None,
    }


def test_real_world_section(base_params, tmp_path, mlflow_uri):
    write_inputs(tmp_path, None)
    metrics = json.loads((tmp_path / "reports" / "evaluation.json").read_text())
    cases = [
        rw_case("cropped_png", 10, 1.5),
        rw_case("cropped_png", 30, -0.02),
        rw_case("resized", 30, 0.5, best=(20, 2.0)),
        rw_case("never_compressed", None, 0.0),
    ]
    excluded = {"never_compressed": {"reason": "the reference carries a JPEG lattice", "images": ["x.png"]}}
    metrics["real_world"] = {"LIVE1": {"cases": cases, "excluded": excluded}}
    (tmp_path / "reports" / "evaluation.json").write_text(json.dumps(metrics))
    s = stage.run(base_params, paths(tmp_path))
    assert "real_world_LIVE1.png" in {Path(p).name for p in s["plots"]}
    assert (
        "LIVE1 at QF 30: restoring (real world: title of cropped_png) makes the photos 0.020 dB worse (PSNR) "
        "than the input." in s["negative_gains"]
    )
    md = (tmp_path / "reports" / "report.md").read_text()
    assert "## Photos as users have them: LIVE1" in md
    head = "| case | QF | n | PSNR in | PSNR out | gain (dB) | best hand-picked QF | its gain (dB) | share of it |"
    assert head in md
    assert "| title of cropped_png | 10 | 2 | 30.00 | 31.50 | +1.500 | - | - | - | 10 | 0.0 | 0% | pixels 2 |" in md
    assert "| title of resized | 30 | 2 | 30.00 | 30.50 | +0.500 | 20 | +2.000 | 25% | 30 | 0.0 | 0% | pixels 2 |" in md
    assert "| title of never_compressed | - | 2 | 30.00 | 30.00 | +0.000 | - | - | - | - | - | 100% | none 2 |" in md
    html = (tmp_path / "reports" / "reporting.html").read_text()
    assert "<th>best hand-picked QF</th>" in html and "<td>25%</td>" in html
    assert "never_compressed: 1 reference(s) left out (the reference carries a JPEG lattice)." in md
    assert reporting.real_world_plot("LIVE1", cases[3:]) is None  # one point per case: nothing to draw


def test_train_plot_has_no_empty_validation_frame():
    log = [{"step": s, "loss": 1.0 / s} for s in range(1, 30)]
    alone = images.decode_image(reporting.train_plot(log)).rgb  # no validation ran: the loss panel only
    with_val = images.decode_image(
        reporting.train_plot(log + [{"step": 29, "val_psnr": 30.0, "val_psnr_jpeg": 29.0}])
    ).rgb
    assert alone.shape[0] == with_val.shape[0] and with_val.shape[1] == pytest.approx(2 * alone.shape[1], rel=0.02)


def test_champion_next_to_the_model_just_evaluated(base_params, tmp_path, mlflow_uri):
    """The registry champion's stored evaluation, on the same sets and QFs as this model's."""
    import torch

    from pipeline.models import build_model
    from pipeline.models.checkpoint import save_checkpoint

    write_inputs(tmp_path, None)
    mine = json.loads((tmp_path / "reports" / "evaluation.json").read_text())
    champ = json.loads(json.dumps(mine))
    champ["results"]["LIVE1"]["10"]["blind"]["gain"] = 1.0  # mine: +1.5
    del champ["results"]["sample_test"]  # scored elsewhere: shown as missing
    torch.manual_seed(0)
    save_checkpoint(
        tmp_path / "c.pt", "qacnet", {"width": 8, "mid_blocks": 1}, build_model("qacnet", width=8, mid_blocks=1), {}
    )
    with tracking.start_run("train", base_params.tracking.experiment) as run:
        pyfunc.log_checkpoint(tmp_path / "c.pt")
        tracking.log_dict(champ, tracking.EVALUATION_ARTIFACT)
    name = base_params.register.model_name
    registry.register_version(name, run.info.run_id, {}, aliases=("champion",))
    s = stage.run(base_params, paths(tmp_path))
    assert s["champion"] == f"{name} v1"
    md = (tmp_path / "reports" / "report.md").read_text()
    section = md.split("## Against the registry's champion")[1].split("## ")[0]
    assert f"better than the champion ({name} v1) at 1 of 4 set x QF points" in section
    assert "| LIVE1 | 10 | 27.19 | 27.19 | +1.500 | +1.000 | +0.500 |" in section
    assert "| sample_test | 10 | 27.00 | - | +1.000 | - | - |" in section


def test_report_without_champion(base_params, tmp_path, mlflow_uri):
    write_inputs(tmp_path, None)
    stage.run(base_params, paths(tmp_path))
    md = (tmp_path / "reports" / "report.md").read_text()
    assert "No comparison: the registry has no champion of jpeg-restoration yet." in md
