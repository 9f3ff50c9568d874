"""The layering ../shared/ARCHITECTURE.md promises: gpt/ in rooms by concern, imports pointing
downwards only, Lightning only in gpt/train/ (and main.py), every idea in a file of readable
size; and the private Lightning names we lean on, where nothing public serves, still there."""

import ast
import inspect
import subprocess
import sys

import pytest

from helpers import ROOT

PACKAGE = ROOT / "gpt"
# Lowest first: a room may import the rooms before it, never those after it. errors and files
# are the conventions every room shares.
ROOMS = ("errors", "files", "tokenizers", "model", "data", "interop", "eval", "train", "serve")
LIGHTNING = ("lightning", "pytorch_lightning", "torchmetrics")


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def room_of(path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def modules():
    return [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE]


def test_ls_gpt_shows_the_rooms():
    entries = {p.name for p in PACKAGE.iterdir() if not p.name.startswith(("_", "."))}
    assert entries == {"errors.py", "files.py", "tokenizers", "model", "data", "interop", "eval", "train", "serve"}
    for room in ROOMS[2:]:
        assert (PACKAGE / room / "__init__.py").read_text().startswith('"""')  # each says what lives there


def test_only_the_training_layer_imports_lightning():
    uses = {p for p in modules() if any(m.split(".")[0] in LIGHTNING for m in imported_modules(p))}
    assert uses and {room_of(p) for p in uses} == {"train"}


def test_imports_point_downwards_only():
    upward = []
    for path in modules():
        mine = ROOMS.index(room_of(path))
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "gpt" and len(parts) > 1 and ROOMS.index(parts[1]) > mine:
                upward.append(f"{path.relative_to(ROOT)} imports {module}")
    assert upward == []


@pytest.mark.slow
def test_the_plain_rooms_work_without_lightning(tmp_path):
    plain = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in modules()
        if room_of(p) not in ("train",)
    )
    code = (
        "import sys\n"
        "sys.modules['lightning'] = sys.modules['torchmetrics'] = None  # any import of them fails\n"
        f"for name in {plain!r}:\n"
        "    __import__(name)\n"
        "from gpt import GPT, GPTConfig, generate, load_model\n"
        "import torch\n"
        "model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8))\n"
        "print(generate(model, torch.zeros(1, 1, dtype=torch.long), 3, temperature=0).shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "torch.Size([1, 4])"
    assert {"gpt.model.models", "gpt.tokenizers.char", "gpt.data.corpus", "gpt.interop.hf"} <= set(plain)


def test_no_file_over_about_350_lines_and_no_class_over_250():
    for path in [*PACKAGE.rglob("*.py"), ROOT / "main.py"]:
        lines = path.read_text().splitlines()
        assert len(lines) <= 360, f"{path.relative_to(ROOT)} has {len(lines)} lines"
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                assert size <= 250, f"{path.relative_to(ROOT)}: class {node.name} has {size} lines"


def test_main_only_wires():
    text = (ROOT / "main.py").read_text()
    assert len(text.splitlines()) <= 200
    tree = ast.parse(text)
    private = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("_")]
    assert private == ["__init__"]  # no private Lightning method overridden ...
    read = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("_")]
    assert read == ["__init__"]  # ... and no private name read (super().__init__ only)


def test_the_private_lightning_names_we_rely_on_still_exist():
    """Where nothing public serves (Lightning 2.6), we use these; an upgrade that renames one
    fails here rather than in a user's run."""
    from lightning.fabric.plugins.precision import amp
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
    from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector

    # main.py: LightningCLI reads --ckpt_path's hyperparameters over the command line just after
    # parse_arguments; main.py hands it no path there (see GPTCLI.parse_arguments).
    init = inspect.getsource(LightningCLI.__init__)
    assert init.index("self.parse_arguments(") < init.index("self._parse_ckpt_path()")
    assert "before_instantiate_classes()" in init.split("self._parse_ckpt_path()", 1)[1]
    assert 'get("ckpt_path")' in inspect.getsource(LightningCLI._parse_ckpt_path)
    # SaveOnInterrupt: the flag Lightning's own SIGTERM handler sets, and never between micro-batches.
    assert "received_sigterm" in inspect.getsource(_SignalConnector)
    assert callable(_TrainingEpochLoop._should_accumulate)
    # ValidateAtTheEnd / SaveOnInterrupt: the step count the loggers resume from, in the checkpoint.
    assert '"_batches_that_stepped"' in inspect.getsource(_TrainingEpochLoop.on_load_checkpoint)
    # make_optimizer: the attribute Lightning reads to refuse clipping for a fused optimizer.
    assert "_step_supports_amp_scaling" in inspect.getsource(amp)


def test_the_private_jsonargparse_names_we_rely_on_still_exist():
    """gpt/train/arguments.py finds a subcommand's keys (for the closest one to a mistyped key)
    through jsonargparse's subcommands action: nothing public lists them."""
    from gpt.train.arguments import known_keys, subcommand_parsers
    from helpers import cli_parser

    parsers = subcommand_parsers(cli_parser())
    assert sorted(parsers) == ["fit", "predict", "test", "validate"]
    assert {"model.n_layer", "trainer.max_steps", "data.corpus"} <= set(known_keys(parsers["fit"]))
