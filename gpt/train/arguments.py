"""What is wrong with a command line or a config file, said so that it can be fixed: a key
that does not exist is named with the file it is in and the closest key there is
(`--model.n_layers` -> model.n_layer), and an option of a callback or logger class with the
closest one that class takes. (Abbreviated options are refused by the parser itself:
allow_abbrev=False in main.py.)"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import yaml


def parse(parser: Any, args: list[str]) -> Any:
    """parser.parse_args(args), its errors about unknown keys made clear."""
    try:
        return parser.parse_args(args)
    except argparse.ArgumentError as e:
        raise argparse.ArgumentError(None, explain(str(e), parser, args)) from None


def explain(message: str, parser: Any, args: list[str]) -> str:
    """jsonargparse's message, or a clearer one when it is about keys that do not exist."""
    subcommand = next((a for a in args if a in subcommand_parsers(parser)), None)
    keys = known_keys(subcommand_parsers(parser).get(subcommand, parser))
    if found := re.match(r"unrecognized arguments: (.*)", message):
        options = [word.split("=")[0] for word in found.group(1).split() if word.startswith("--")]
        if not options:  # words that are no option (a value without its option, say): as they are
            return message
        return "; ".join(f"unknown option {option}{closest('--', option[2:], keys)}" for option in options)
    if found := re.search(r"does not accept option '([\w.]+)'", message):
        key = found.group(1)
        files = [f for f in config_files(args) if key in flat_keys(f)]
        where = f"{', '.join(files)}: " if files else ""
        return f"{where}unknown key {key}{closest('', key, keys)}"
    if found := re.search(r"Problem with given class_path '([\w.]+)':\s*Option '(\w+)' is not accepted", message):
        cls, option = found.groups()
        params = class_parameters(cls)
        return f"{cls.rsplit('.', 1)[-1]} has no option {option!r}{closest('', option, params)}"
    return message


def closest(prefix: str, key: str, keys: list[str]) -> str:
    """' (did you mean KEY?)' for the closest known key, or nothing."""
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
    return f" (did you mean {prefix}{match[0]}?)" if match else ""


def subcommand_parsers(parser: Any) -> dict[str, Any]:
    """fit, validate, ...: the parser of each (jsonargparse keeps them in its subcommands action)."""
    action = getattr(parser, "_subcommands_action", None)
    return dict(getattr(action, "_name_parser_map", {}) or {})


def known_keys(parser: Any) -> list[str]:
    return [a.dest for a in parser._actions if a.dest != "help" and not a.dest.endswith(".help")]


def config_files(args: list[str]) -> list[str]:
    """The files given with --config (or -c)."""
    files = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            files.append(args[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.partition("=")[2])
    return files


def flat_keys(path: str) -> set[str]:
    """The dotted keys of a YAML file (model.n_layer), under a subcommand's section too."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return set()

    def walk(value: Any, prefix: str) -> set[str]:
        if not isinstance(value, dict):
            return set()
        keys = set()
        for k, v in value.items():
            keys |= {f"{prefix}{k}"} | walk(v, f"{prefix}{k}.")
        return keys

    keys = walk(data, "")
    return keys | {k.partition(".")[2] for k in keys if "." in k}  # `fit: {model: ...}` holds model.*


def class_parameters(path: str) -> list[str]:
    """The __init__ arguments of the class at a dotted path (none if it cannot be imported)."""
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        return [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
    except (ImportError, AttributeError, ValueError, TypeError):
        return []
