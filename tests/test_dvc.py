"""The real pipeline with real `dvc` commands, offline, on a copy of this repository: the
researcher's journey as the README writes it (tests/test_readme.py checks that every command of
its researcher section is run here, by ``readme()``, or marked as needing the data or a GPU).

One fresh git repo (the tracked files, a seconds-long configuration, the venv linked as
./quickstart.sh leaves it) is shared by the tests below, in order: the baseline run by the venv's
dvc, not activated (git status then shows dvc.lock and the three git-tracked reports: committed
as the baseline); nothing to rerun; an edit of pipeline/core/images.py invalidates exactly the
stages that read pixels; ablations, each from the baseline (one --temp without activating, a
failed one mended, two queued), compared with DVC's own commands and the ablation table;
promotion and two rollbacks by hand, the summary and the MLflow UI; the full configuration
previewed; a fresh clone compares with the baseline before anything runs, then pulls the outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from test_readme import researcher_commands

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ACTIVATE = "source .venv/bin/activate"  # what sh(activated=True) stands for: the venv's bin/ first on PATH
TRACKED_REPORTS = {"reports/metrics.json", "reports/gain_vs_qf.csv", "reports/train_log.csv"}  # cache: false


def sh(
    cmd: list[str], cwd: Path, activated: bool = True, ok: bool = True, timeout: int = 600, **env_vars: str
) -> subprocess.CompletedProcess:
    """Run ``cmd`` as a researcher's shell would: the venv on PATH only when ``activated``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "VIRTUAL_ENV")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != VENV_BIN.resolve()]
    env.update(
        DVC_NO_ANALYTICS="1",
        PATH=os.pathsep.join([str(VENV_BIN)] * activated + path),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
        OMP_NUM_THREADS="2",
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        **env_vars,
    )
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def readme(command: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """A command of the README's researcher section, run as it is written there."""
    assert command in researcher_commands(), f"the README does not show {command!r}"
    return sh(shlex.split(command), cwd, **kwargs)


def git_status(proj: Path) -> set[str]:
    return {
        line[3:] for line in sh(["git", "status", "--porcelain", "--untracked-files=all"], proj).stdout.splitlines()
    }


def db_rows(proj: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(proj / "mlflow.db") as con:
        return con.execute(sql).fetchall()


def mermaid_edges(text: str) -> set[tuple[str, str]]:
    """The edges of a Mermaid flowchart, with `a --> b & c` chains and `node1["name"]` labels."""
    names = dict(re.findall(r'(node\d+)\["(\w+)"\]', text))
    edges = set()
    for line in text.splitlines():
        groups = [[names.get(n.strip(), n.strip()) for n in part.split("&")] for part in line.split("-->")]
        for a, b in zip(groups, groups[1:]):
            edges |= {(x, y) for x in a for y in b}
    return edges


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repo holding this checkout's tracked files, a seconds-long configuration, and the
    venv linked as ./quickstart.sh leaves it (git-ignored)."""
    proj = tmp_path_factory.mktemp("dvc") / "proj"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for rel in filter(None, files.split("\0")):
        if (ROOT / rel).is_file():
            (proj / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, proj / rel)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
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
    raw["detector"].update(samples=40, steps=20, sides=[96, 160])
    raw["evaluate"].update(primary_qfs=[10], real_world_qfs=[10])
    (proj / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (proj / ".venv").symlink_to(VENV_BIN.parent)
    sh(["git", "init", "-q", "-b", "main"], proj)
    sh(["git", "add", "-A"], proj)
    sh(["git", "commit", "-qm", "fixture"], proj)
    return proj


def test_the_baseline_run_by_the_venvs_dvc_not_activated(project: Path) -> None:
    sh([".venv/bin/dvc", "repro"], project, activated=False)  # the stages find .venv through scripts/py
    evaluation = json.loads((project / "reports" / "evaluation.json").read_text())
    assert set(evaluation["results"]["sample_test"]) == {"10", "50"}
    headline = json.loads((project / "reports" / "metrics.json").read_text())
    assert set(headline) == {"primary", "qf10", "real_world", "params_M"}
    assert git_status(project) == {"dvc.lock", *TRACKED_REPORTS}  # everything else the pipeline writes is ignored
    assert (project / "reports" / "report.html").is_file()
    assert (project / "data" / "testsets" / "sample_test" / "color" / "qf_10").is_dir()
    promotion = json.loads((project / "reports" / "promotion.json").read_text())
    assert promotion["champion_before"]["version"] == "1"  # the shipped model became the first champion
    assert "Running stage" not in sh(["dvc", "repro"], project).stdout
    assert "up to date" in sh(["dvc", "status"], project).stdout
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-qm", "baseline results"], project)


def test_editing_images_py_invalidates_the_stages_that_read_pixels(project: Path) -> None:
    images_py = project / "pipeline" / "core" / "images.py"
    before = images_py.read_text()
    images_py.write_text(before + "# a comment is enough\n")
    try:
        status = sh(["dvc", "status", "--json"], project).stdout
    finally:
        images_py.write_text(before)
    changed = set(json.loads(status))
    assert {
        "download_train@sample_train",
        "refs@sample_test",
        "train",
        "train_detector",
        "evaluate",
        "promote",
    } <= changed
    assert "report" not in changed  # the report reads no pixels
    assert "up to date" in sh(["dvc", "status"], project).stdout


def test_a_detector_param_reruns_the_detector_not_the_training(project: Path) -> None:
    """`dvc exp run -S detector.<key>=...` changes what train_detector declares, nothing train does."""
    params = project / "params.yaml"
    before = params.read_text()
    raw = yaml.safe_load(before)
    raw["detector"]["steps"] += 1
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        changed = set(json.loads(sh(["dvc", "status", "--json"], project).stdout))
    finally:
        params.write_text(before)
    assert "train_detector" in changed and "train" not in changed


def test_ablations_each_from_the_baseline(project: Path) -> None:
    """One --temp ablation by the venv's dvc, not activated; a failed stage mended as the README
    says; two queued ablations: each changed only its own key, the registry got a version of
    each, DVC's comparisons and the ablation table show them against the committed baseline."""
    versions = db_rows(project, "select count(*) from model_versions")[0][0]
    readme(".venv/bin/dvc exp run --temp -n fft-0.1 -S loss.fft_weight=0.1", project, activated=False)
    assert git_status(project) == set()  # --temp leaves the workspace as it was

    failed = sh(["dvc", "exp", "run", "-S", "train.patch_size=4096"], project, ok=False)  # no image that large
    assert failed.returncode != 0 and "no usable training images" in failed.stdout + failed.stderr
    assert git_status(project) == {"params.yaml", "reports/train_log.csv"}  # DVC removed the train stage's outputs
    readme("git checkout params.yaml dvc.lock reports/", project)
    readme("dvc checkout", project)
    assert git_status(project) == set() and "up to date" in sh(["dvc", "status"], project).stdout

    readme("dvc exp run --queue -n fft-0.0 -S loss.fft_weight=0.0", project)
    readme("dvc exp run --queue -n one-stage -S model.qacnet.num_stages=1", project)
    readme("dvc queue start -j 1", project)  # activated: its workers start `dvc` from PATH
    deadline = time.time() + 900
    while time.time() < deadline:
        queue = readme("dvc queue status", project).stdout
        if "Queued" not in queue and "Running" not in queue:
            break
        time.sleep(5)
    assert queue.count("Success") == 2 and "Failed" not in queue, queue

    assert db_rows(project, "select count(*) from model_versions")[0][0] == versions + 3
    assert ("fft-0.1",) in db_rows(project, "select value from tags where key = 'dvc_exp_name'")
    assert not list(project.glob(".dvc/tmp/exps/**/mlflow.db"))  # $DVC_ROOT kept the store in the repo
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], project).stdout)
    head = next(c for c in shown if c["rev"] != "workspace")  # the committed baseline, from git
    assert head["data"]["metrics"]["reports/metrics.json"]["data"]["primary"] is not None
    exps = {e["name"]: e["revs"][0] for c in shown for e in (c.get("experiments") or [])}
    own = {"fft-0.1": {"loss.fft_weight"}, "fft-0.0": {"loss.fft_weight"}, "one-stage": {"model.qacnet.num_stages"}}
    for name, keys in own.items():
        assert set(exps[name]["data"]["metrics"]["reports/metrics.json"]["data"]) >= {"primary", "qf10", "params_M"}
        assert (
            set(json.loads(sh(["dvc", "params", "diff", "HEAD", name, "--json"], project).stdout)["params.yaml"])
            == keys
        )

    params = readme("dvc params diff HEAD one-stage", project).stdout
    assert "model.qacnet.num_stages" in params and "fft_weight" not in params and "train_sets" not in params
    metrics = readme("dvc metrics diff HEAD one-stage", project)
    assert "primary" in metrics.stdout and "failed to load" not in metrics.stdout + metrics.stderr
    table = readme("dvc exp show --only-changed --drop '^(models|reports|data)/'", project, COLUMNS="160").stdout
    header = table.splitlines()[1].split()
    assert {"primary", "qf10", "real_world", "loss.fft_weight", "model.qacnet.num_stages"} <= set(header)
    assert "…" not in table and not any(h.startswith(("data.", "train.")) for h in header)  # no preset keys
    assert max(len(line) for line in table.splitlines()) <= 160
    assert (
        "primary"
        in json.loads(sh(["dvc", "metrics", "diff", "fft-0.1", "one-stage", "--json"], project).stdout)[
            "reports/metrics.json"
        ]
    )
    plots = sh(["dvc", "plots", "diff", "fft-0.1", "one-stage", "--json"], project).stdout
    assert "reports/gain_vs_qf.csv" in json.loads(plots)["data"]

    ablations = readme("python -m pipeline.ablations", project).stdout
    rows = {line.split("|")[1].strip(): line for line in ablations.splitlines() if line.startswith("| ")}
    assert "main (baseline)" in rows
    assert "| model.qacnet.num_stages=1 |" in rows["one-stage"] and "| loss.fft_weight=0.0 |" in rows["fft-0.0"]
    assert "| loss.fft_weight=0.1 |" in rows["fft-0.1"]
    assert git_status(project) == set()


def test_promote_and_roll_back_twice_by_hand(project: Path) -> None:
    """v1 shipped (champion), v2 the baseline, v3..v5 the ablations: by hand, MLflow only."""
    assert "history   v1  (" in readme("python -m pipeline.promote", project).stdout
    out = readme("python -m pipeline.promote --version 3", project).stdout
    assert "version 3 promoted to champion (was 1)" in out and "history   v1 -> v3" in out
    out = readme("python -m pipeline.promote --candidate", project).stdout
    assert "version 5 promoted to champion (was 3)" in out and "candidate v5 (trained, experiment " in out
    assert "champion is now version 3 (was 5)" in readme("python -m pipeline.promote --rollback", project).stdout
    out = readme("python -m pipeline.promote --rollback", project).stdout
    assert "champion is now version 1 (was 3)" in out and "history   v1  (" in out
    assert "up to date" in sh(["dvc", "status"], project).stdout  # no DVC output touched
    assert git_status(project) == set()

    summary = sh(["python", "-m", "scripts.summary"], project).stdout  # the quickstart's closing lines
    assert "champion  v1 (shipped" in summary and "candidate v5 (trained" in summary
    assert re.search(r"sample_test\s+10\s+[+-]\d+\.\d\d\s+[+-]\d+\.\d\d", summary)  # champion beside candidate

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = "mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db"
    assert ui in researcher_commands()
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen(
        ["bash", "-c", f"{ui} --port {port}"], cwd=project, env=env, start_new_session=True, **quiet
    )
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/alias?name=jpeg-restoration&alias=champion"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    champion = json.loads(r.read())["model_version"]["version"]
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("mlflow ui did not answer in 2 minutes")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert champion == "1"


def test_the_full_configuration_previewed(project: Path) -> None:
    plan = readme("python -m pipeline.plan --params presets/full.yaml", project).stdout
    assert "DIV2K_train" in plan and "size not pinned" in plan
    assert re.search(r"NVIDIA H100.*compile reduce-overhead .* <- this configuration", plan)
    readme("cp presets/full.yaml params.yaml", project)
    try:
        plain = sh(["dvc", "repro", "--dry"], project, ok=False)
        dry = readme("dvc repro --dry --force-downstream", project)
        stages = sh(["dvc", "stage", "list", "--name-only"], project).stdout.split()
        dag = readme("dvc dag --md --collapse-foreach-matrix", project).stdout
    finally:
        sh(["git", "checkout", "params.yaml"], project)
    # Plain --dry hashes the output of a download that has not run (treeverse/dvc#9818): when this
    # fails, DVC has fixed it and the README can drop --force-downstream.
    assert plain.returncode != 0 and "refs@LIVE1" in plain.stderr
    assert dry.stdout.count("Running stage") == len(stages) > 40
    drawn = re.search(r"```mermaid\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[1]
    assert mermaid_edges(drawn) == mermaid_edges(dag) and len(mermaid_edges(dag)) == 18


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_fresh_clone_compares_with_the_baseline_then_pulls(project: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    sh(["dvc", "remote", "add", "-d", "shared", str(remote)], project)
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-qm", "remote", "--allow-empty"], project)
    sh(["dvc", "push"], project)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], clone).stdout)  # nothing pulled or run yet
    head = next(c for c in shown if c["rev"] != "workspace")
    assert head["data"]["metrics"]["reports/metrics.json"]["data"]["primary"] is not None
    diff = sh(["dvc", "metrics", "diff"], clone)
    assert "failed to load" not in diff.stdout + diff.stderr
    assert sh(["dvc", "params", "diff"], clone).stdout.strip() == ""
    sh(["dvc", "pull"], clone)
    for rel in ("models/model.pt", "data/testsets/sample_test/color/qf_10", "data/raw/train/sample_train"):
        a, b = project / rel, clone / rel
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()) if a.is_dir() else [Path()]
        assert files
        for f in files:
            assert _digest(a / f) == _digest(b / f), rel
    assert "up to date" in sh(["dvc", "status"], clone).stdout


def test_the_stages_python_without_the_venv_stops_in_one_line(tmp_path: Path) -> None:
    """scripts/py (every dvc.yaml command): the repo's .venv; without one, a python3 lacking the
    project's packages is refused in one line, before the stage touches anything."""
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python3").write_text("#!/bin/sh\nexit 1\n")  # a python3 without torch, mlflow...
    (bare / "python3").chmod(0o755)
    env = {"PATH": f"{bare}:/usr/bin:/bin", "DVC_ROOT": str(tmp_path)}
    res = subprocess.run([ROOT / "scripts" / "py", "-c", "print('ran')"], env=env, capture_output=True, text=True)
    assert res.returncode == 127 and res.stdout == "" and len(res.stderr.splitlines()) == 1
    assert "run ./quickstart.sh" in res.stderr and "dvc checkout" in res.stderr
    (tmp_path / ".venv").symlink_to(VENV_BIN.parent)
    res = subprocess.run([ROOT / "scripts" / "py", "-c", "import filelock; print('ran')"], env=env, capture_output=True)
    assert res.returncode == 0 and res.stdout == b"ran\n"
