"""configs/: each says only what differs from main.py's defaults (and, for the model, from its
preset), so that a reader sees at a glance what an experiment changes."""

from pathlib import Path

import pytest
import yaml

from gpt.model.config import FIELDS, GPTConfig
from helpers import ROOT, cli_parser

CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


@pytest.fixture(scope="module")
def defaults():
    """Every setting of `fit` as main.py's parser gives it when nothing is said."""
    return cli_parser().parse_args(["fit"])["fit"].as_dict()


def leaves(tree: dict, prefix: str = "") -> dict:
    """{"model.n_layer": 2, ...}: the settings a YAML gives, a class_path section as one value."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and "class_path" not in value:
            out |= leaves(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


def repeated_defaults(config: Path, defaults: dict) -> list[str]:
    given = leaves(yaml.safe_load(config.read_text()))
    model = {k.removeprefix("model."): v for k, v in given.items() if k.startswith("model.")}
    as_built = GPTConfig(**{k: v for k, v in model.items() if k in FIELDS})  # the preset's values filled in
    preset = GPTConfig(preset=model.get("preset"))
    flat = leaves(defaults)
    repeats = []
    for key, value in given.items():
        name = key.removeprefix("model.")
        if key.startswith("model.") and name in FIELDS and name != "preset":
            if getattr(as_built, name) == getattr(preset, name) and value == getattr(preset, name):
                repeats.append(f"{key}: {value!r} (the preset's)")
        elif key in flat and flat[key] == value:
            repeats.append(f"{key}: {value!r}")
    return repeats


def test_the_defaults_are_read(defaults):
    flat = leaves(defaults)
    assert flat["model.weight_decay"] == 0.1 and flat["trainer.val_check_interval"] == 250
    assert flat["data.corpus"] == "shakespeare" and flat["checkpoint.save_last"] is True


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_config_says_only_what_differs(config, defaults):
    assert repeated_defaults(config, defaults) == []


def test_a_repeated_default_is_caught(tmp_path, defaults):
    config = tmp_path / "x.yaml"
    config.write_text("model:\n  preset: baby\n  n_layer: 6\n  weight_decay: 0.1\n  n_head: 4\ndata:\n  batch_size: 8")
    assert repeated_defaults(config, defaults) == ["model.n_layer: 6 (the preset's)", "model.weight_decay: 0.1"]
