"""The real pipeline with real `dvc` commands, offline, on a copy of this repository.

One fresh git repo (the tracked files, a tiny quickstart configuration) is shared by the tests
below, in order: repro (git status then shows only dvc.lock), nothing to rerun, an edit of
pipeline/core/images.py invalidates exactly the stages that read pixels, two ablations run with
--temp log into the repo's mlflow.db, register new versions and are compared with DVC's own
commands, and a DVC remote carries the outputs to a fresh clone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DVC = [sys.executable, "-m", "dvc"]


def sh(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    env.update(
        DVC_NO_ANALYTICS="1",
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
        OMP_NUM_THREADS="2",
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
    )
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repo holding this checkout's tracked files and a seconds-long configuration."""
    proj = tmp_path_factory.mktemp("dvc") / "proj"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for rel in filter(None, files.split("\0")):
        if (ROOT / rel).is_file():
            (proj / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, proj / rel)
    raw = yaml.safe_load((ROOT / "presets" / "quickstart.yaml").read_text())
    raw["data"]["qfs"] = [10, 50]
    raw["model"]["qacnet"].update(width=8, mid_blocks=1)
    raw["train"].update(
        steps=30,
        batch_size=4,
        patch_size=32,
        patches_per_image=2,
        warmup_steps=5,
        ckpt_every=10,
        log_every=10,
        workers=0,
    )
    raw["evaluate"].update(primary_qfs=[10], real_world_qfs=[10])
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    sh(["git", "init", "-q", "-b", "main"], proj)
    sh(["git", "add", "-A"], proj)
    sh(["git", "commit", "-qm", "fixture"], proj)
    return proj


def db_rows(proj: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(proj / "mlflow.db") as con:
        return con.execute(sql).fetchall()


def test_repro_offline_then_nothing_to_rerun(project: Path) -> None:
    sh(DVC + ["repro"], project)
    evaluation = json.loads((project / "reports" / "evaluation.json").read_text())
    assert set(evaluation["results"]["sample_test"]) == {"10", "50"}
    headline = json.loads((project / "reports" / "metrics.json").read_text())
    assert set(headline) == {"primary", "qf10", "real_world", "params_M"}
    status = sh(["git", "status", "--porcelain", "--untracked-files=all"], project).stdout.splitlines()
    assert [line[3:] for line in status] == ["dvc.lock"]  # everything else the pipeline writes is ignored
    assert (project / "reports" / "report.html").is_file()
    assert (project / "data" / "testsets" / "sample_test" / "color" / "qf_10").is_dir()
    promotion = json.loads((project / "reports" / "promotion.json").read_text())
    assert promotion["champion_before"]["version"] == "1"  # the shipped model became the first champion
    again = sh(DVC + ["repro"], project)
    assert "Running stage" not in again.stdout
    assert "up to date" in sh(DVC + ["status"], project).stdout
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-qm", "baseline results"], project)


def test_editing_images_py_invalidates_the_stages_that_read_pixels(project: Path) -> None:
    images_py = project / "pipeline" / "core" / "images.py"
    before = images_py.read_text()
    images_py.write_text(before + "# a comment is enough\n")
    try:
        status = sh(DVC + ["status", "--json"], project).stdout
    finally:
        images_py.write_text(before)
    changed = set(json.loads(status))
    assert {"download_train@sample_train", "refs@sample_test", "train", "evaluate", "promote"} <= changed
    assert "report" not in changed  # the report reads no pixels
    assert "up to date" in sh(DVC + ["status"], project).stdout


def test_two_temp_experiments_compared_with_dvc(project: Path) -> None:
    """Two ablations in temporary copies log into the repo's mlflow.db and each registers a
    version; exp show, metrics diff, params diff and plots diff compare them; the table fits
    160 columns with every headline metric and changed param in full."""
    versions = db_rows(project, "select count(*) from model_versions")[0][0]
    runs = db_rows(project, "select count(*) from runs")[0][0]
    for name, change in (("fft-0.1", "loss.fft_weight=0.1"), ("steps-20", "train.steps=20")):
        sh(DVC + ["exp", "run", "--temp", "-n", name, "-S", change], project)
    assert db_rows(project, "select count(*) from model_versions")[0][0] == versions + 2
    assert db_rows(project, "select count(*) from runs")[0][0] > runs
    assert ("fft-0.1",) in db_rows(project, "select value from tags where key = 'dvc_exp_name'")
    assert not list(project.glob(".dvc/tmp/exps/**/mlflow.db"))  # $DVC_ROOT kept the store in the repo
    shown = json.loads(sh(DVC + ["exp", "show", "--json"], project).stdout)
    exps = {e["name"]: e["revs"][0] for c in shown for e in (c.get("experiments") or [])}
    for name in ("fft-0.1", "steps-20"):
        headline = exps[name]["data"]["metrics"]["reports/metrics.json"]["data"]
        assert set(headline) >= {"primary", "qf10", "params_M"}, name
    assert exps["fft-0.1"]["data"]["params"]["params.yaml"]["data"]["loss"]["fft_weight"] == 0.1
    table = sh(["env", "COLUMNS=160"] + DVC + ["exp", "show", "--only-changed", "--no-pager"], project).stdout
    lines = [line.split() for line in table.splitlines() if line.strip() and not line.strip().startswith("─")]
    header, rows = lines[0], {r[2].strip("[]"): r for r in lines[1:] if len(r) > 2}
    # Every headline metric and changed param in full; DVC folds only the changed dependency
    # hashes (intermediate outputs such as models/model.pt) into its last column, "…".
    assert header[:4] == ["Experiment", "Created", "primary", "qf10"] and header.index("…") == len(header) - 1
    assert {"real_world", "loss.fft_weight", "train.steps"} <= set(header)
    assert "0.1" in rows["fft-0.1"] and "20" in rows["steps-20"]
    assert max(len(line) for line in table.splitlines()) <= 160
    dropped = sh(
        ["env", "COLUMNS=160"] + DVC + ["exp", "show", "--only-changed", "--no-pager", "--drop", "^(models|reports)/"],
        project,
    ).stdout
    assert "…" not in dropped and "primary" in dropped
    metrics = sh(DVC + ["metrics", "diff", "fft-0.1", "steps-20", "--json"], project).stdout
    assert "primary" in json.loads(metrics)["reports/metrics.json"]
    params = json.loads(sh(DVC + ["params", "diff", "fft-0.1", "steps-20", "--json"], project).stdout)
    assert set(params["params.yaml"]) == {"loss.fft_weight", "train.steps"}
    plots = sh(DVC + ["plots", "diff", "fft-0.1", "steps-20", "--json"], project).stdout
    assert "reports/gain_vs_qf.csv" in json.loads(plots)["data"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_remote_push_then_pull_into_a_fresh_clone(project: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    sh(DVC + ["remote", "add", "-d", "shared", str(remote)], project)
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-qm", "remote", "--allow-empty"], project)
    sh(DVC + ["push"], project)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    sh(DVC + ["pull"], clone)
    for rel in ("models/model.pt", "data/testsets/sample_test/color/qf_10", "data/raw/train/sample_train"):
        a, b = project / rel, clone / rel
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()) if a.is_dir() else [Path()]
        assert files
        for f in files:
            assert _digest(a / f) == _digest(b / f), rel
    assert "up to date" in sh(DVC + ["status"], clone).stdout
