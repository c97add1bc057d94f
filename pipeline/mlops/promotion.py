"""The model registry's decisions: register a trained model, promote it past the champion or not,
bring the shipped model in (``stages/promote.py``, the automatic gate); promote a version by
hand, roll back (``python -m pipeline.promote`` and the app's Models page).

``register`` adds the trained checkpoint (logged by the train stage in its run) as a new version
of the registered model ``register.model_name`` with the alias ``candidate`` and its metrics as tags.
The alias ``champion`` moves to it only when it beats the current champion on the primary
metric (mean blind-mode PSNR gain over ``evaluate.primary_sets`` x ``primary_qfs``) by at least
``register.threshold`` dB; the old champion becomes ``previous``. Both numbers are measured on
the same test images: a champion scored on other sets is re-scored first. When the registry
has no champion yet, the shipped ``register.pretrained`` model becomes the first one; a newer
shipped model (new file content) goes through the same gate against the current champion.

``promote_version`` gives ``champion`` to a registered version whatever its numbers;
``rollback`` gives it back to the version that held it before, and a second rollback goes one
further back (``registry.champion_history``). The gate's decision goes to the promote stage's
DVC output and to MLflow; a decision by hand goes to MLflow only (a "promote" run), never to a
DVC output. Every alias move is ``registry.move_champion``, under the registry's file lock, which
is also held around each read-compare-move, so that concurrent experiments never race the alias.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.core import files
from pipeline.data.datasets import EvalPair, eval_pairs, jpeg_dir, refs_dir
from pipeline.evaluation import results as results_mod
from pipeline.evaluation.results import primary_key, primary_value
from pipeline.evaluation.scoring import evaluate_grid
from pipeline.mlops import pyfunc, registry, tracking
from pipeline.models.checkpoint import describe, read_checkpoint
from pipeline.params import Params
from pipeline.restoration.options import RestoreOptions
from pipeline.restoration.restorer import Restorer


class PromotionError(RuntimeError):
    pass


def pairs_in(testsets: Path) -> Callable[[str, int], list[EvalPair]]:
    return lambda s, q: eval_pairs(jpeg_dir(testsets, s, q), refs_dir(testsets, s))


def scorer(params: Params, checkpoint: Path) -> Restorer:
    """The checkpoint restoring as the evaluate stage does (``evaluate`` params), so that scores compare."""
    return Restorer.load(checkpoint, RestoreOptions.from_params(params.evaluate))


def score(params: Params, checkpoint: Path, testsets: Path, sets: list[str], qfs: list[int]) -> float:
    """Mean blind-mode PSNR gain of a checkpoint on the generated test sets."""
    grid = evaluate_grid(scorer(params, checkpoint), pairs_in(testsets), sets, qfs, ("blind",))
    return primary_value(grid, sets, qfs)


def cover_evaluation(params: Params, testsets: Path, version: dict, sets: list[str], qfs: list[int]) -> None:
    """Make a version's stored evaluation (``tracking.EVALUATION_ARTIFACT`` in its run, what the
    app's Results page compares) cover these test sets and QFs: score what is missing and log the
    merged file. A version without one (or with one this code does not read) is skipped."""
    path = tracking.run_evaluation(version["run_id"])
    try:
        evaluation = results_mod.load(path) if path else None
    except results_mod.ResultsError:
        return
    todo = results_mod.missing(evaluation, sets, qfs)
    if evaluation is None or not todo:
        return
    ckpt = registry.checkpoint_from_uri(f"models:/{params.register.model_name}/{version['version']}")
    grid = evaluate_grid(
        scorer(params, ckpt), pairs_in(testsets), sorted({s for s, _ in todo}), sorted({q for _, q in todo})
    )
    with tracking.start_run("evaluate", params.tracking.experiment, run_id=version["run_id"]):
        tracking.log_dict(results_mod.merge(evaluation, grid), tracking.EVALUATION_ARTIFACT)


def version_score(params: Params, version: dict, key: str, testsets: Path, sets: list[str], qfs: list[int]) -> float:
    """A version's primary score for ``key``: its tag, or measured now (and tagged)."""
    name = params.register.model_name
    if key in version["tags"]:
        return float(version["tags"][key])
    value = score(params, registry.checkpoint_from_uri(f"models:/{name}/{version['version']}"), testsets, sets, qfs)
    registry.set_version_tags(name, version["version"], {key: value})
    return value


def adopt_shipped(
    params: Params, testsets: Path, key: str, sets: list[str], qfs: list[int], champion: dict | None
) -> dict | None:
    """Bring the shipped ``register.pretrained`` model into the registry through the same gate
    as a trained one; returns the champion afterwards.

    Each shipped file (by content hash) is registered once. In an empty registry it becomes the
    first champion; when a newer shipped model arrives (a git pull), it takes the champion alias
    only if it beats the current champion by ``register.threshold`` on the same test images.
    """
    name, path = params.register.model_name, Path(params.register.pretrained)
    if not path.is_file():
        return champion
    digest = files.sha256_file(path)
    if any(v["tags"].get("pretrained_sha256") == digest for v in registry.registered_versions(name)):
        return champion
    ckpt = read_checkpoint(path)
    facts = describe(ckpt)
    grid_sets = list(dict.fromkeys([*params.data.test_sets, *sets]))  # every test set: the Results page compares
    restorer = scorer(params, path)
    results = evaluate_grid(restorer, pairs_in(testsets), grid_sets, sorted({*params.data.qfs, *qfs}))
    evaluation = results_mod.build(
        {**facts, "checkpoint": str(params.register.pretrained)}, restorer.options.as_dict(), results, sets, qfs
    )
    value = evaluation["primary"]["value"]
    with tracking.start_run("register_pretrained", params.tracking.experiment) as run:
        pyfunc.log_checkpoint(path)
        if (path.parent / "MODEL_CARD.md").is_file():
            tracking.log_artifact(path.parent / "MODEL_CARD.md", tracking.MODEL_ARTIFACT)
        tracking.log_params({"source": str(params.register.pretrained), "gpu": ckpt["meta"].get("gpu"), **facts})
        tracking.log_metrics({"primary_psnr_gain": value})
        tracking.log_dict(evaluation, tracking.EVALUATION_ARTIFACT)  # where the evaluate stage puts a trained model's
    tags = {
        "source": str(params.register.pretrained),
        "pretrained_sha256": digest,
        key: value,
        "primary_key": key,
        "primary_value": value,
        **{k: v for k, v in facts.items() if v is not None},
    }
    version = registry.register_version(name, run.info.run_id, tags)
    if champion is None:
        registry.crown(name, version)
        print(f"registered the shipped pretrained model as version {version}, alias champion ({value:+.3f} dB)")
    else:
        champ_value = version_score(params, champion, key, testsets, sets, qfs)
        verdict = "not promoted"
        if value - champ_value >= params.register.threshold:
            registry.crown(name, version)
            verdict = "promoted to champion"
        print(
            f"registered the shipped pretrained model ({path.name}, new content) as version {version}: "
            f"{value:+.3f} dB vs champion v{champion['version']} {champ_value:+.3f} dB: {verdict}"
        )
    return registry.alias_version(name, "champion")


def register(params: Params, model: Path, meta_file: Path, evaluation: Path, testsets: Path, out: Path) -> dict:
    """Register ``model`` (its metadata, its evaluation), decide on the champion, record it in ``out``.

    ``testsets``: the test-set folder the champion is re-scored on when it was scored elsewhere."""
    name = params.register.model_name
    metrics = results_mod.load(evaluation)
    meta = json.loads(Path(meta_file).read_text())
    sets, qfs = metrics["primary"]["sets"], metrics["primary"]["qfs"]
    key = primary_key(sets, qfs)
    value = float(metrics["primary"]["value"])
    run_id = meta.get("run_id")
    if not run_id or not tracking.run_exists(run_id):  # trained elsewhere: log the checkpoint now
        with tracking.start_run("register", params.tracking.experiment) as run:
            pyfunc.log_checkpoint(model)
            tracking.log_dict(metrics, tracking.EVALUATION_ARTIFACT)  # for the app's Results page
        run_id = run.info.run_id
    tags = {
        "primary_key": key,
        "primary_value": value,
        key: value,
        "arch": meta["arch"],
        "steps": meta.get("steps"),
        "params": meta.get("params"),
        "data": ", ".join(meta.get("train_sets", [])) or None,
        "params_digest": meta.get("params_digest"),
        "git_commit": meta.get("git_commit"),
    }
    for s, by_qf in results_mod.gains(metrics["results"]).items():
        tags.update({f"gain_blind.{s}.qf{q}": round(g, 4) for q, g in by_qf.items()})
    with registry.registry_lock():
        champion = adopt_shipped(params, testsets, key, sets, qfs, registry.alias_version(name, "champion"))
        version = registry.register_version(name, run_id, tags, aliases=("candidate",))
        champ_value = version_score(params, champion, key, testsets, sets, qfs) if champion else None
        margin = None if champ_value is None else value - champ_value
        promote = champion is None or margin >= params.register.threshold
        if promote:
            registry.crown(name, version)
    if not promote and champion["run_id"]:  # the app's Results page compares it with the candidate, QF by QF
        cover_evaluation(params, testsets, champion, list(params.data.test_sets), list(params.data.qfs))
    decision = {
        "model_name": name,
        "metric": key,
        "threshold": params.register.threshold,
        "candidate": {"version": version, "value": value, "run_id": run_id},
        "champion_before": None if champion is None else {"version": champion["version"], "value": champ_value},
        "margin": margin,
        "promoted": promote,
        "champion_after": version if promote else champion["version"],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    record(params, out, decision, run_id)
    return decision


def promote_version(params: Params, version: str) -> dict:
    """Give ``champion`` to a registered ``version`` whatever its numbers (by hand: MLflow only)."""
    name = params.register.model_name
    with registry.registry_lock():
        champion = registry.alias_version(name, "champion")
        if not any(v["version"] == str(version) for v in registry.registered_versions(name)):
            raise PromotionError(f"{name}: no version {version} in the registry")
        if champion and champion["version"] == str(version):
            raise PromotionError(f"{name}: version {version} is already the champion")
        history = registry.crown(name, str(version))
    decision = {
        "model_name": name,
        "forced": True,
        "promoted": True,
        "champion_before": champion and champion["version"],
        "champion_after": str(version),
        "history": history,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    record(params, None, decision, None)
    return decision


def rollback(params: Params) -> dict:
    """Give ``champion`` back to the version that held it before this one (by hand: MLflow only)."""
    name = params.register.model_name
    with registry.registry_lock():
        history = registry.champion_history(name)
        if len(history) < 2:
            where = f"version {history[-1]} is the first champion" if history else "no champion yet"
            raise PromotionError(f"{name}: nothing further to roll back to ({where})")
        registry.move_champion(name, history[:-1])
    decision = {
        "model_name": name,
        "rollback": True,
        "champion_before": history[-1],
        "champion_after": history[-2],
        "history": history[:-1],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    record(params, None, decision, None)
    return decision


def record(params: Params, out: Path | None, decision: dict, run_id: str | None) -> None:
    """Log a decision to MLflow (into ``run_id`` when given) and write it to ``out`` (the promote
    stage's DVC output) when given."""
    if out is not None:
        files.write_bytes(out, json.dumps(decision, indent=2).encode())
    with tracking.start_run("promote", params.tracking.experiment, run_id=run_id):
        tracking.log_dict(decision, "promotion.json")
