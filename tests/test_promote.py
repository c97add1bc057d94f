"""The registry with a real SQLite store: the gate (stages.promote), moves by hand (pipeline.promote:
--version, --candidate, --rollback through the champion history), concurrent runs."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import sys
from pathlib import Path

import mlflow
import pytest
import torch
import yaml

from pipeline import params
from pipeline import promote as cli
from pipeline.core import images
from pipeline.data import datasets
from pipeline.evaluation import results as results_mod
from pipeline.mlops import promotion, registry, tracking
from pipeline.models import build_model, count_params
from pipeline.models.checkpoint import save_checkpoint
from pipeline.restoration.options import RestoreOptions
from stages import make_testsets
from stages import promote as stage

ROOT = Path(__file__).resolve().parent.parent
SET = "sample_test"
TINY = {"width": 8, "mid_blocks": 1}
KEY = promotion.primary_key([SET], [10])
# dvc.yaml's arguments (relative to the project root, the working directory)
ARGS = [
    "--model",
    "models/model.pt",
    "--meta",
    "models/model.json",
    "--evaluation",
    "reports/evaluation.json",
    "--testsets",
    "data/testsets",
    "--out",
    "reports/promotion.json",
]


@pytest.fixture(scope="module")
def preset() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def save_model(path: Path, seed: int, noise: float = 0.0) -> None:
    """A tiny QACNet: the identity when untrained; noisy weights make it a poor model."""
    torch.manual_seed(seed)
    model = build_model("qacnet", **TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    save_checkpoint(path, "qacnet", TINY, model, {"steps": seed})


def write_candidate(root: Path, value: float, seed: int) -> None:
    """What the train and evaluate stages leave for promote: the model and its primary metric."""
    save_model(root / "models" / "model.pt", seed)
    meta = {"arch": "qacnet", "kwargs": TINY, "steps": seed, "run_id": None, "params_digest": f"d{seed}"}
    (root / "models" / "model.json").write_text(json.dumps(meta))
    results = {SET: {"10": {"blind": {"gain": value}, "header": {"gain": value}}}}
    metrics = results_mod.build({"arch": "qacnet"}, RestoreOptions().as_dict(), results, [SET], [10])
    images.write_bytes(root / "reports" / "evaluation.json", results_mod.dumps(metrics))


def make_root(root: Path, preset: dict, pretrained: Path, image_factory) -> Path:
    """A project root: params.yaml, a two-image test set at QF 10 (made by the test-set stage)."""
    raw = copy.deepcopy(preset)
    raw["data"].update(test_sets=[SET], qfs=[10])
    raw["evaluate"].update(primary_sets=[SET], primary_qfs=[10], device="cpu")
    raw["register"]["pretrained"] = str(pretrained)  # absolute: the same file from every root
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    for i in range(2):
        images.write_png(root / "data" / "raw" / "test" / SET / f"img{i}.png", image_factory(64, 96, seed=i))
    refs = datasets.refs_dir(root / "data" / "testsets", SET)
    make_testsets.make_refs(root / "data" / "raw" / "test" / SET, refs)
    make_testsets.make_jpeg(refs, datasets.jpeg_dir(root / "data" / "testsets", SET, 10), 10)
    return root


@pytest.fixture
def root(tmp_path: Path, preset, image_factory, mlflow_store, monkeypatch) -> Path:
    """tmp_path holds the store (DVC_ROOT) and the shipped model; tmp_path/repo the project."""
    save_model(tmp_path / "pretrained" / "model.pt", seed=100, noise=0.05)  # scores well below 0 dB
    monkeypatch.chdir(tmp_path)
    return make_root(tmp_path / "repo", preset, tmp_path / "pretrained" / "model.pt", image_factory)


def aliases(name: str = "jpeg-restoration") -> dict[str, str | None]:
    """Which version holds each alias (None: no version)."""
    found = {a: registry.alias_version(name, a) for a in ("champion", "previous", "candidate")}
    return {a: v and v["version"] for a, v in found.items()}


def load(root: Path) -> params.Params:
    return params.load(root / "params.yaml")


def register(root: Path) -> dict:
    """The promote stage as dvc.yaml runs it, in the project ``root``."""
    m, r = root / "models", root / "reports"
    return promotion.register(
        load(root),
        m / "model.pt",
        m / "model.json",
        r / "evaluation.json",
        root / "data" / "testsets",
        r / "promotion.json",
    )


def test_better_candidate_is_promoted(root, tmp_path):
    write_candidate(root, 0.5, seed=1)
    d = register(root)
    champ_value = promotion.score(
        load(root), tmp_path / "pretrained" / "model.pt", root / "data" / "testsets", [SET], [10]
    )
    assert champ_value < -0.5  # the noisy shipped model makes the JPEGs worse
    assert d["promoted"] and d["metric"] == KEY
    assert d["champion_before"] == {"version": "1", "value": pytest.approx(champ_value)}
    assert d["candidate"]["version"] == "2" and d["candidate"]["value"] == 0.5
    assert d["margin"] == pytest.approx(0.5 - champ_value) and d["champion_after"] == "2"
    assert aliases() == {"champion": "2", "previous": "1", "candidate": "2"}
    assert json.loads((root / "reports" / "promotion.json").read_text()) == d

    v1, v2 = (
        registry.alias_version("jpeg-restoration", "previous"),
        registry.alias_version("jpeg-restoration", "champion"),
    )
    assert v1["tags"]["source"] == str(tmp_path / "pretrained" / "model.pt")
    assert float(v1["tags"][KEY]) == pytest.approx(champ_value)
    assert float(v2["tags"][KEY]) == 0.5 and v2["tags"]["arch"] == "qacnet"
    assert v2["tags"][f"gain_blind.{SET}.qf10"] == "0.5" and v2["tags"]["params_digest"] == "d1"
    champion = registry.checkpoint_from_uri("models:/jpeg-restoration@champion")
    assert champion.read_bytes() == (root / "models" / "model.pt").read_bytes()
    first = registry.checkpoint_from_uri("models:/jpeg-restoration/1")
    assert first.read_bytes() == (tmp_path / "pretrained" / "model.pt").read_bytes()


def test_shipped_version_describes_itself(root, tmp_path):
    """The shipped model's version: facts as tags, its evaluation on every test set x QF, an MLflow model."""
    (tmp_path / "pretrained" / "MODEL_CARD.md").write_text("# Model card\nA noisy tiny model.")
    write_candidate(root, -30.0, seed=1)
    register(root)
    shipped = registry.alias_version("jpeg-restoration", "champion")
    n_params = str(count_params(build_model("qacnet", **TINY)))  # counted from the weights: no meta["params"]
    assert {k: shipped["tags"][k] for k in ("arch", "params", "steps")} == {
        "arch": "qacnet",
        "params": n_params,
        "steps": "100",
    }
    evaluation = json.loads(tracking.run_evaluation(shipped["run_id"]).read_text())
    assert evaluation["primary"]["value"] == pytest.approx(float(shipped["tags"][KEY]))
    assert set(evaluation["results"][SET]["10"]) == {"jpeg", "blind", "header", "n"}
    assert tracking.run_artifact(shipped["run_id"], "model/MODEL_CARD.md").read_text().startswith("# Model card")
    model = mlflow.pyfunc.load_model("models:/jpeg-restoration@champion")
    assert model.metadata.get_input_schema().input_names() == ["image"]
    candidate = registry.alias_version("jpeg-restoration", "candidate")  # trained elsewhere: logged by promote
    assert json.loads(tracking.run_evaluation(candidate["run_id"]).read_text())["primary"]


def test_worse_candidates_are_not_promoted(root):
    write_candidate(root, -30.0, seed=1)
    d = register(root)
    assert not d["promoted"] and d["champion_after"] == "1" and d["margin"] < 0
    assert aliases() == {"champion": "1", "previous": None, "candidate": "2"}

    champ_value = d["champion_before"]["value"]  # now read from version 1's tag
    write_candidate(root, champ_value + 0.005, seed=2)  # better, but by less than the threshold (0.01)
    d = register(root)
    assert not d["promoted"] and d["champion_before"]["value"] == pytest.approx(champ_value)
    assert aliases() == {"champion": "1", "previous": None, "candidate": "3"}
    assert [v["version"] for v in registry.registered_versions("jpeg-restoration")] == ["3", "2", "1"]


def test_champion_is_rescored_without_its_tag(root):
    write_candidate(root, -30.0, seed=1)
    first = register(root)["champion_before"]["value"]
    tracking.init_store().delete_model_version_tag("jpeg-restoration", "1", KEY)  # e.g. scored on other sets
    write_candidate(root, -29.0, seed=2)
    d = register(root)
    assert d["champion_before"] == {"version": "1", "value": pytest.approx(first)}  # measured again
    assert float(registry.alias_version("jpeg-restoration", "champion")["tags"][KEY]) == pytest.approx(first)


def history() -> list[str]:
    return registry.champion_history("jpeg-restoration")


def test_by_hand_then_rollbacks_walk_the_history(root, monkeypatch, capsys):
    """``python -m pipeline.promote``: --candidate, --version, then rollbacks go one champion further
    back each time and say when there is nothing further; no DVC output is written."""
    monkeypatch.chdir(root)
    for seed in (1, 2):
        write_candidate(root, -30.0, seed=seed)
        assert stage.main(ARGS) == 0  # v1 shipped (champion), v2 and v3 candidates, not promoted
    assert "version 3: -30.000 dB vs champion v1" in capsys.readouterr().out
    decision = (root / "reports" / "promotion.json").read_bytes()
    assert aliases() == {"champion": "1", "previous": None, "candidate": "3"} and history() == ["1"]

    assert cli.main(["--candidate"]) == 0
    out = capsys.readouterr().out
    assert "version 3 promoted to champion (was 1)" in out and "history   v1 -> v3" in out
    assert cli.main(["--version", "2"]) == 0
    assert aliases() == {"champion": "2", "previous": "3", "candidate": "3"} and history() == ["1", "3", "2"]
    assert cli.main(["--rollback"]) == 0
    assert "rolled back: champion is now version 3 (was 2)" in capsys.readouterr().out
    assert aliases() == {"champion": "3", "previous": "1", "candidate": "3"}
    assert cli.main(["--rollback"]) == 0  # further back, not back to 2
    assert "champion is now version 1 (was 3)" in capsys.readouterr().out
    assert aliases() == {"champion": "1", "previous": None, "candidate": "3"}
    assert cli.main(["--rollback"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nothing further to roll back to (version 1 is the first champion)" in err
    assert (root / "reports" / "promotion.json").read_bytes() == decision  # MLflow only
    promotes = [r for r in tracking.search_runs("jpeg-restoration") if r["name"] == "promote"]
    assert len(promotes) >= 4  # every decision by hand is a run

    assert cli.main([]) == 0  # the state, nothing moved
    out = capsys.readouterr().out
    assert "champion  v1 (shipped, primary" in out and "candidate v3 (trained, primary -30.000 dB)" in out


def test_moves_refused(root, monkeypatch, capsys):
    monkeypatch.chdir(root)
    assert cli.main(["--rollback"]) == 1  # empty registry
    assert "nothing further to roll back to (no champion yet)" in capsys.readouterr().err
    assert cli.main(["--candidate"]) == 1
    assert "no version has the alias 'candidate'" in capsys.readouterr().err
    write_candidate(root, -30.0, seed=1)
    assert stage.main(ARGS) == 0  # v1 shipped (champion), v2 candidate
    refused = {"1": "version 1 is already the champion", "9": "no version 9 in the registry"}
    for version, message in refused.items():
        assert cli.main(["--version", version]) == 1
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--version", "2", "--rollback"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert aliases() == {"champion": "1", "previous": None, "candidate": "2"} and history() == ["1"]


def test_history_of_a_store_without_one(root, monkeypatch):
    """A store whose aliases were moved before the history existed (or in the MLflow UI) starts
    from its previous and champion aliases, and a champion moved outside is appended."""
    monkeypatch.chdir(root)
    write_candidate(root, -30.0, seed=1)
    register(root)  # v1, v2
    write_candidate(root, -30.0, seed=2)
    register(root)  # v3
    client = tracking.init_store()
    client.delete_registered_model_tag("jpeg-restoration", registry.HISTORY_TAG)
    registry.set_alias("jpeg-restoration", "previous", "2")
    registry.set_alias("jpeg-restoration", "champion", "3")
    assert history() == ["2", "3"]
    registry.move_champion("jpeg-restoration", ["2", "3"])
    registry.set_alias("jpeg-restoration", "champion", "1")  # by hand in the MLflow UI
    assert history() == ["2", "3", "1"]
    assert promotion.rollback(load(root))["champion_after"] == "3"
    assert aliases() == {"champion": "3", "previous": "2", "candidate": "3"}


def _promote_in(root: Path, env: dict[str, str], barrier) -> None:
    """``python -m stages.promote`` run in ``root``, in a process of its own; output to promote.log."""
    os.environ.update(env)
    os.chdir(root)
    with open("promote.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        barrier.wait(timeout=60)
        code = stage.main(ARGS)
    sys.exit(code)


def test_concurrent_promotions(root, tmp_path, forkserver):
    """Two experiments finishing at once (own working copies, one store and lock): no lost update."""
    roots = {"a": 1.0, "b": 2.0}
    for i, (name, value) in enumerate(roots.items()):
        clone = shutil.copytree(root, tmp_path / name)
        write_candidate(clone, value, seed=10 + i)
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}  # the shared store and lock
    barrier = forkserver.Barrier(len(roots))
    procs = [forkserver.Process(target=_promote_in, args=(tmp_path / name, env, barrier)) for name in roots]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    logs = {name: (tmp_path / name / "promote.log").read_text() for name in roots}
    assert [p.exitcode for p in procs] == [0, 0], logs

    versions = registry.registered_versions("jpeg-restoration")
    assert sorted(int(v["version"]) for v in versions) == [1, 2, 3]
    assert [v["tags"].get("source") for v in versions].count(None) == 2  # the shipped model, registered once
    champions = [v for v in versions if "champion" in v["aliases"]]
    assert len(champions) == 1 and float(champions[0]["tags"]["primary_value"]) == 2.0
    assert aliases()["candidate"] == "3"
    decisions = {n: json.loads((tmp_path / n / "reports" / "promotion.json").read_text()) for n in roots}
    assert decisions["b"]["promoted"]
    assert {decisions["a"]["candidate"]["version"], decisions["b"]["candidate"]["version"]} == {"2", "3"}


def test_pretrained_with_another_file_name(root, tmp_path, preset, image_factory):
    shutil.copyfile(tmp_path / "pretrained" / "model.pt", tmp_path / "shipped.pt")
    other = make_root(tmp_path / "other", preset, tmp_path / "shipped.pt", image_factory)
    write_candidate(other, -30.0, seed=1)
    register(other)
    path = registry.checkpoint_from_uri("models:/jpeg-restoration@champion")
    assert path.read_bytes() == (tmp_path / "shipped.pt").read_bytes()


def test_new_shipped_model_goes_through_the_gate(root, tmp_path):
    """A git pull brings a new shipped model: registered once, champion only if it is better."""
    write_candidate(root, -30.0, seed=1)
    register(root)  # v1 the noisy shipped model (champion), v2 the candidate
    assert aliases() == {"champion": "1", "previous": None, "candidate": "2"}

    save_model(tmp_path / "pretrained" / "model.pt", seed=101, noise=0.2)  # a newer, even worse file
    write_candidate(root, -30.0, seed=2)
    register(root)  # v3 the new shipped model (not promoted), v4 the candidate
    versions = {v["version"]: v for v in registry.registered_versions("jpeg-restoration")}
    assert versions["3"]["tags"]["pretrained_sha256"] != versions["1"]["tags"]["pretrained_sha256"]
    assert aliases() == {"champion": "1", "previous": None, "candidate": "4"}

    save_model(tmp_path / "pretrained" / "model.pt", seed=102)  # untrained tiny QACNet: the identity, 0 dB
    write_candidate(root, -30.0, seed=3)
    register(root)  # v5 the better shipped model: champion through the gate
    assert aliases() == {"champion": "5", "previous": "1", "candidate": "6"}
    assert float(registry.alias_version("jpeg-restoration", "champion")["tags"][KEY]) == pytest.approx(0.0, abs=0.05)

    write_candidate(root, -30.0, seed=4)
    register(root)  # the same shipped file again: not registered twice
    assert len(registry.registered_versions("jpeg-restoration")) == 7
