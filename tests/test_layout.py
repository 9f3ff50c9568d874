"""The layering ../shared/ARCHITECTURE.md promises: Lightning only in main.py, the data
module, the LightningModule and the callbacks; every idea in a file of readable size."""

import ast
import subprocess
import sys

from helpers import ROOT

PACKAGE = ROOT / "gpt"
# The callbacks are three files: callbacks.py, tensorboard.py, eval_callbacks.py.
LIGHTNING_FILES = {"callbacks.py", "datamodule.py", "eval_callbacks.py", "lit_module.py", "tensorboard.py"}


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_lightning_layer_imports_lightning():
    uses = {
        p.name
        for p in PACKAGE.glob("*.py")
        if any(m.split(".")[0] in ("lightning", "pytorch_lightning", "torchmetrics") for m in imported_modules(p))
    }
    assert uses == LIGHTNING_FILES


def test_the_plain_modules_work_without_lightning(tmp_path):
    plain = sorted(p.stem for p in PACKAGE.glob("*.py") if p.name not in LIGHTNING_FILES | {"__init__.py"})
    code = (
        "import sys\n"
        "sys.modules['lightning'] = sys.modules['torchmetrics'] = None  # any import of them fails\n"
        f"for name in {plain!r}:\n"
        "    __import__('gpt.' + name)\n"
        "from gpt import GPT, GPTConfig, generate, load_model\n"
        "import torch\n"
        "model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8))\n"
        "print(generate(model, torch.zeros(1, 1, dtype=torch.long), 3, temperature=0).shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "torch.Size([1, 4])"
    assert {"model", "layers", "tokenizers", "corpus", "checkpoint", "generation", "hf"} <= set(plain)


def test_no_file_over_about_350_lines_and_no_class_over_250():
    for path in PACKAGE.glob("*.py"):
        lines = path.read_text().splitlines()
        assert len(lines) <= 360, f"{path.name} has {len(lines)} lines"
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                assert size <= 250, f"{path.name}: class {node.name} has {size} lines"
