"""params.yaml -> typed dataclasses: every mistake is reported with the key that holds it."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import params
from pipeline.params import ParamsError

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "params.yaml", ROOT / "presets" / "full.yaml"]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(FILES[0].read_text())


def changed(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``raw`` with dotted ``key`` set to ``value`` (``...`` deletes it)."""
    out = copy.deepcopy(raw)
    *parents, last = key.split(".")
    node = out
    for k in parents:
        node = node[k]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


def key_paths(node: Any, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return set()
    return {prefix + k for k in node} | {p for k, v in node.items() for p in key_paths(v, f"{prefix}{k}.")}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_shipped_files_load(path: Path) -> None:
    p = params.load(path)
    assert p.model.arch in ("qacnet", "dncnn", "fbcnn")
    assert isinstance(p.train.lr, float)
    assert isinstance(p.data.qfs, tuple)
    assert p.train.batch_size % p.train.patches_per_image == 0
    assert p.model.kwargs() == getattr(p.model, p.model.arch)


def test_files_have_the_same_keys() -> None:
    a, b = (yaml.safe_load(f.read_text()) for f in FILES)
    assert key_paths(a) == key_paths(b)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("colour", 1, "colour"),
        ("train.lrr", 0.1, "train.lrr"),
        ("model.qacnet.depth", 3, "model.qacnet.depth"),
        ("train.lr", ..., "train.lr"),
        ("loss", ..., "loss"),
        ("train.lr", "fast", "train.lr"),
        ("train.steps", True, "train.steps"),
        ("train.amp", 1, "train.amp"),
        ("train.seed", 1.5, "train.seed"),
        ("data.qfs", [10, "20"], "data.qfs[1]"),
        ("data.qfs", 10, "data.qfs"),
        ("data.local", {"LIVE1": 3}, "data.local.LIVE1"),
        ("model.qacnet.width", "wide", "model.qacnet.width"),
        ("model.qacnet.enc_blocks", [1, "2"], "model.qacnet.enc_blocks[1]"),
        ("model.arch", "resnet", "model.arch"),
        ("train.qf_min", 96, "qf_min"),
        ("train.batch_size", 6, "train.batch_size"),
        ("train.patch_size", 60, "train.patch_size"),
        ("data.qfs", [10, 101], "data.qfs"),
        ("train.compile", "fastest", "train.compile"),
        ("train.compile", True, "train.compile"),
        ("train.clean_prob", 0.9, "train.clean_prob"),
        ("train.resize_prob", -0.1, "train.resize_prob"),
        ("train.align_prob", 1.2, "train.align_prob"),
    ],
)
def test_error_names_the_key(raw: dict, key: str, value: Any, named: str) -> None:
    with pytest.raises(ParamsError) as err:
        params.parse(changed(raw, key, value))
    assert named in str(err.value)


def test_unknown_key_lists_the_expected_ones(raw: dict) -> None:
    with pytest.raises(ParamsError, match=r"unknown key\(s\) train\.lrr.*train\.lr"):
        params.parse(changed(raw, "train.lrr", 0.1))


def test_yaml_exponent_without_dot_is_a_string(tmp_path: Path) -> None:
    """PyYAML reads 2e-4 as a string: the message names the key, the file, and the fix."""
    path = tmp_path / "params.yaml"
    text, n = re.subn(r"(?m)^  lr: .*$", "  lr: 2e-4", FILES[0].read_text(), count=1)  # train.lr, the first
    assert n == 1
    path.write_text(text)
    with pytest.raises(ParamsError) as err:
        params.load(path)
    assert "train.lr" in str(err.value)
    assert "2.0e-4" in str(err.value)
    assert str(path) in str(err.value)


def test_int_is_accepted_for_a_float(raw: dict) -> None:
    p = params.parse(changed(raw, "train.lr", 1))
    assert p.train.lr == 1.0 and isinstance(p.train.lr, float)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        params.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="bad.yaml"):
        params.load(bad)


def test_params_are_frozen(raw: dict) -> None:
    p = params.parse(raw)
    with pytest.raises(AttributeError):
        p.train.lr = 0.5  # type: ignore[misc]


def test_digest_follows_the_values(raw: dict) -> None:
    base = params.parse(raw).digest()
    assert params.parse(copy.deepcopy(raw)).digest() == base
    assert params.parse(changed(raw, "train.lr", 0.123)).digest() != base
    assert params.parse(changed(raw, "model.qacnet.width", 24)).digest() != base


def test_train_digest_covers_only_what_the_train_stage_declares() -> None:
    p = params.load(ROOT / "params.yaml")
    same = [
        dataclasses.replace(p, evaluate=dataclasses.replace(p.evaluate, tile=256)),
        dataclasses.replace(p, register=dataclasses.replace(p.register, threshold=0.5)),
        dataclasses.replace(p, data=dataclasses.replace(p.data, test_sets=("LIVE1",))),
    ]
    assert {q.train_digest() for q in same} == {p.train_digest()}
    changed = [
        dataclasses.replace(p, train=dataclasses.replace(p.train, lr=2 * p.train.lr)),
        dataclasses.replace(p, loss=dataclasses.replace(p.loss, fft_weight=0.1)),
        dataclasses.replace(p, data=dataclasses.replace(p.data, train_sets=("DIV2K_train",))),
    ]
    assert p.train_digest() not in {q.train_digest() for q in changed}


def test_projection_off_written_bare_in_yaml(tmp_path: Path) -> None:
    """`dvc exp run -S evaluate.projection=off` writes a bare `off`, which YAML reads as false."""
    text = (ROOT / "params.yaml").read_text().replace("projection: auto", "projection: off", 1)
    assert "projection: off" in text
    (tmp_path / "params.yaml").write_text(text)
    assert params.load(tmp_path / "params.yaml").evaluate.projection == "off"
