"""The Models and Results pages (AppTest) on a real SQLite registry: a shipped champion and a trained
candidate, each a pyfunc model with its evaluation; promote and roll back from the page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from pipeline.evaluation import results as results_mod
from pipeline.mlops import pyfunc, registry, tracking
from pipeline.models import build_model
from pipeline.models.checkpoint import save_checkpoint
from pipeline.restoration.options import RestoreOptions

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
NAME = "jpeg-restoration"
TINY = {"width": 8, "mid_blocks": 1}
SET = "sample_test"


@pytest.fixture(autouse=True)
def _fresh_caches():
    st.cache_resource.clear()
    st.cache_data.clear()


def evaluation(gains: dict[int, float], run_id: str | None, header_gain: float = 0.5) -> dict:
    """An evaluation.json as the evaluate stage writes it, with these blind PSNR gains by QF."""
    results = {}
    for qf, gain in gains.items():
        jpeg = {"psnr": 25.0 + qf / 10, "ssim": 0.7, "psnrb": 24.0 + qf / 10}
        restored = {k: v + gain for k, v in jpeg.items()}
        results[str(qf)] = {
            "n": 2,
            "jpeg": jpeg,
            "blind": {**restored, "gain": gain},
            "header": {**restored, "gain": header_gain},
        }
    return results_mod.build(
        {"arch": "qacnet", "run_id": run_id}, RestoreOptions().as_dict(), {SET: results}, [SET], list(gains)
    )


def add_version(tmp_path: Path, seed: int, gains: dict[int, float], shipped: bool, header_gain: float = 0.5) -> str:
    """Log a tiny model as the stages do (a pyfunc model folder, its evaluation) and register it."""
    torch.manual_seed(seed)
    ckpt = tmp_path / f"m{seed}" / "model.pt"
    save_checkpoint(ckpt, "qacnet", TINY, build_model("qacnet", **TINY), {"steps": 10 * seed})
    stage = "register_pretrained" if shipped else "train"
    with tracking.start_run(stage, "jpeg-restoration") as run:
        pyfunc.log_checkpoint(ckpt)
        ev = evaluation(gains, run.info.run_id, header_gain)
        tracking.log_dict(ev, tracking.EVALUATION_ARTIFACT)
        if shipped:
            (ckpt.parent / "MODEL_CARD.md").write_text("# Model card: the shipped tiny model\n\nTrained on nothing.")
            tracking.log_artifact(ckpt.parent / "MODEL_CARD.md", "model")
        else:
            tracking.log_params({"train.lr": 4e-4, "train.steps": 10 * seed})
    key = f"score.psnr_gain_blind.{SET}.qf10-20"
    tags = {"primary_key": key, "primary_value": ev["primary"]["value"]}
    tags |= {"source": "models/pretrained/model.pt", "pretrained_sha256": "ab" * 32} if shipped else {"arch": "qacnet"}
    (tmp_path / f"eval{seed}.json").write_text(json.dumps(ev))
    return registry.register_version(NAME, run.info.run_id, tags)


@pytest.fixture
def project(mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout in tmp_path (params.yaml, reports/) whose registry holds v1 shipped (champion) and
    v2 trained (candidate), the candidate evaluated last (reports/evaluation.json)."""
    shutil.copyfile(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    assert add_version(tmp_path, 1, {10: 1.0, 20: 0.5}, shipped=True) == "1"
    assert add_version(tmp_path, 2, {10: 1.25, 20: 0.25}, shipped=False, header_gain=-0.1) == "2"
    registry.set_alias(NAME, "champion", "1")
    registry.set_alias(NAME, "candidate", "2")
    (tmp_path / "reports").mkdir()
    shutil.copyfile(tmp_path / "eval2.json", tmp_path / "reports" / "evaluation.json")
    return tmp_path


def page(path: str) -> AppTest:
    return AppTest.from_file(APP, default_timeout=60).run().switch_page(path).run()


def aliases() -> dict[str, str | None]:
    found = {a: registry.alias_version(NAME, a) for a in ("champion", "previous", "candidate")}
    return {a: v and v["version"] for a, v in found.items()}


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_models_page_describes_every_version(project):
    at = page("app_pages/models.py")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["version"]) == [2, 1] and list(table["aliases"]) == ["candidate", "champion"]
    assert table["source"][1] == "shipped: models/pretrained/model.pt" and table["source"][0].startswith(
        "trained: run "
    )
    assert list(table["arch"]) == ["qacnet", "qacnet"]  # v1 has no arch tag: read from its checkpoint
    assert list(table["steps"]) == [20.0, 10.0] and table["parameters (M)"][1] > 0
    assert list(table["primary metric (dB)"]) == [0.75, 0.75] and table["scored on"][0] == f"{SET}, QF 10-20"
    params = at.dataframe[1].value  # version 2 selected: the run that trained it
    assert params.loc["train.lr", "value"] == "0.0004"
    assert any(f"mlflow ui --backend-store-uri sqlite:///{project}/mlflow.db" in c.value for c in at.code)

    at.selectbox[0].set_value("1").run()
    assert any("Model card: the shipped tiny model" in m.value for m in at.markdown)
    assert button(at, "Make version 1 the champion").disabled  # it is the champion already


def test_promote_and_roll_back_from_the_page(project):
    at = page("app_pages/models.py")
    assert button(at, "Roll back to the previous champion").disabled  # no version has 'previous' yet
    button(at, "Make version 2 the champion").click().run()
    assert "Same as `python -m pipeline.promote --version 2`" in at.warning[0].value
    button(at, "Cancel").click().run()
    assert not at.warning and aliases() == {"champion": "1", "previous": None, "candidate": "2"}

    button(at, "Make version 2 the champion").click().run()
    button(at, "Yes, move the champion").click().run()
    assert not at.exception and not at.error
    assert aliases() == {"champion": "2", "previous": "1", "candidate": "2"}
    assert at.success[0].value == "Version 2 is the champion (was 1)."
    assert not (project / "reports" / "promotion.json").exists()  # a move by hand touches no DVC output
    assert registry.champion_history(NAME) == ["1", "2"]  # what the CLI's rollback walks back
    assert list(at.dataframe[0].value["aliases"]) == ["candidate, champion", "previous"]

    button(at, "Roll back to the previous champion").click().run()
    assert "Same as `python -m pipeline.promote --rollback`" in at.warning[0].value
    button(at, "Yes, move the champion").click().run()
    assert aliases() == {"champion": "1", "previous": None, "candidate": "2"}
    assert at.success[0].value == "Version 1 is the champion (was 2)."
    assert button(at, "Roll back to the previous champion").disabled  # nothing further back


def test_results_page_compares_champion_and_candidate(project):
    at = page("app_pages/results.py")
    assert not at.exception and not at.error
    assert [m.label for m in at.metric][:2] == ["Primary metric, champion v1", "Primary metric, candidate v2"]
    assert at.metric[1].value == "+0.750 dB"
    verdict = "**sample_test**: candidate v2 is better at QF 10 and worse at QF 20 than champion v1"
    assert any(m.value.startswith(verdict) for m in at.markdown)
    table = at.dataframe[0].value
    assert list(table["QF"]) == [10, 20] and list(table["Δ gain"]) == pytest.approx([0.25, -0.25])
    assert list(table["champion PSNR"]) == pytest.approx([27.0, 27.5]) and "Δ SSIM" in table and "Δ PSNR-B" in table
    assert len(at.get("vega_lite_chart")) == 1  # both gain curves in one chart (tables.gain_curves)
    sentences = [w.value for w in at.warning]
    assert any(
        f"{SET} at QF 20: restoring (QF read from the JPEG header) makes the photos 0.100 dB worse" in s
        for s in sentences
    )
    assert not any("{" in s for s in sentences)  # sentences, not dicts
    assert not [s for s in at.subheader if s.value == "Real-world cases"]

    at.radio[0].set_value("header").run()
    assert list(at.dataframe[0].value["Δ gain"]) == pytest.approx([-0.6, -0.6])


def test_results_page_shows_real_world_cases_when_reported(project):
    report = json.loads((project / "reports" / "evaluation.json").read_text())
    cases = [
        {"case": c, "title": c, "qf": 30, "psnr_in": 30.0, "psnr_out": 30.0 + g, "gain": g, "sources": {"header": 2}}
        for c, g in (("phone photo", 0.4), ("screenshot", 0.1))
    ]
    report["real_world"] = {SET: {"cases": cases, "excluded": {}}}
    (project / "reports" / "evaluation.json").write_text(json.dumps(report))
    at = page("app_pages/results.py")
    assert not at.exception
    assert [s.value for s in at.subheader].count("Real-world cases") == 1
    cases = next(d.value for d in at.dataframe if "case" in d.value)
    assert list(cases["case"]) == ["phone photo", "screenshot"]
