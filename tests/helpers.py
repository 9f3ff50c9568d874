"""What several test files share: small corpora, Tiny Shakespeare, running the CLI."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

# The tests never reach the network: a hub dataset that cannot be reached is known at once, as
# on a machine without internet. Set before anything imports huggingface_hub, which reads it then.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# A small corpus with the shape of a play: speakers, lines, blank lines (about 6,000
# characters: enough for a few hundred windows of 32 tokens).
_LINES = [
    "First Citizen:",
    "Before we proceed any further, hear me speak.",
    "",
    "All:",
    "Speak, speak.",
    "",
    "First Citizen:",
    "You are all resolved rather to die than to famish?",
    "",
    "All:",
    "Resolved. resolved.",
    "",
    "MENENIUS:",
    "What work's, my countrymen, in hand? where go you",
    "With bats and clubs?",
    "",
]
LINES_TEXT = "\n".join(_LINES * 20)

# Sixty short speeches separated by blank lines: examples of natural length.
SPEECHES_TEXT = (
    "\n\n".join(f"CITIZEN {i}:\n" + "Speak, speak. " * (1 + i % 4) + "\nWe are resolved." for i in range(60)) + "\n"
)


def shakespeare_file() -> Path:
    """Tiny Shakespeare without the network: $TINY_SHAKESPEARE, data/, or ../shared."""
    candidates = [
        os.environ.get("TINY_SHAKESPEARE", ""),
        ROOT / "data" / "tinyshakespeare" / "input.txt",
        ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt",
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    pytest.skip("Tiny Shakespeare is not on this machine; set TINY_SHAKESPEARE=/path/to/input.txt")


def eval_data() -> Path:
    """The evaluation sets (LAMBADA, PIQA, MMLU, ...) without the network: $EVAL_DATA,
    data/eval, or ../shared/data/eval."""
    candidates = [os.environ.get("EVAL_DATA", ""), ROOT / "data" / "eval", ROOT.parent / "shared" / "data" / "eval"]
    for c in candidates:
        if c and (Path(c) / "piqa" / "valid.jsonl").is_file():
            return Path(c)
    pytest.skip("the evaluation sets are not on this machine; set EVAL_DATA=/path/to/data/eval")


def write_checkpoint(path: Path, model, tokenizer, template: str | None = None, step: int = 0, **extra) -> Path:
    """A checkpoint as `main.py fit` writes one, of a model built here: its config, weights,
    tokenizer (and fine-tuning template), without training; `extra` adds or replaces entries
    (callbacks' states, best_val_loss, ...)."""
    import torch

    checkpoint = (
        {
            "hyper_parameters": dataclasses.asdict(model.config),
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "tokenizer": tokenizer.state_dict(),
            "global_step": step,
        }
        | ({"template": template} if template else {})
        | extra
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def run_main(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python main.py ARGS` the way a user does, in `cwd`."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("GPT_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def main_here(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python main.py ARGS` run in this process: the same main(), without the seconds a fresh
    interpreter takes to import Lightning. Signals a run sends itself (SignalAtStep) reach it
    as they would a separate process. Tests that need a process of their own (SIGKILL, a
    second signal, a signal from outside, DDP) use run_main."""
    import contextlib
    import io

    import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    argv, cwd_before, traceback = sys.argv, Path.cwd(), os.environ.pop("GPT_TRACEBACK", None)
    environ = dict(os.environ)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}  # main() sets them
    try:
        os.environ.update(env or {})
        os.chdir(cwd)
        sys.argv = ["main.py", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
        os.chdir(cwd_before)
        os.environ.clear()
        os.environ.update(environ)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if traceback is not None:
            os.environ["GPT_TRACEBACK"] = traceback
    return subprocess.CompletedProcess(["main.py", *args], code, out.getvalue(), err.getvalue())


def cli_parser():
    """The parser main.py builds (every setting of every subcommand), to parse without running."""
    import main

    captured = []

    class ParseOnly(main.GPTCLI):
        def parse_arguments(self, parser, args):
            captured.append(parser)
            raise StopIteration

    with pytest.raises(StopIteration):
        ParseOnly(main.LitGPT, main.GPTDataModule, args=["fit"], **main.CLI_SETTINGS)
    return captured[0]


def predict(checkpoint: Path | str, cwd: Path, *extra: str, here: bool = True) -> subprocess.CompletedProcess:
    """`python main.py predict --ckpt_path CHECKPOINT EXTRA`, in this process unless here=False."""
    return (main_here if here else run_main)("predict", "--ckpt_path", str(checkpoint), *extra, cwd=cwd)


def assert_clean_error(result: subprocess.CompletedProcess, message: str) -> None:
    """The command failed with one `error:` line that holds message, and no traceback."""
    assert result.returncode == 1, result.stderr[-3000:]
    assert message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


# The model sizes of the unit tests, typed once: TINY, 2 layers x 32 wide, 2 heads, context 16,
# vocab 50, learns in a few steps; SMALLEST, 1 layer x 8, one head, context 8, vocab 10, for
# checks of shapes and wiring.
TINY = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
SMALLEST = dict(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8)


def tiny_config(**kwargs):
    """A GPTConfig of TINY's sizes, any of them changed by kwargs."""
    from gpt.model.config import GPTConfig

    return GPTConfig(**{**TINY, **kwargs})


def trained_checkpoint(tokenizer, path: Path, steps: int = 200, text: str = LINES_TEXT, **extra):
    """A tiny GPT trained for a second on text (LINES_TEXT: so that greedy decoding writes
    varied text, not one token over and over), saved as `main.py fit` saves what predict
    reads, with `extra` entries (template="chat", say); the model, in eval mode."""
    from dataclasses import asdict

    import torch
    import torch.nn.functional as F

    from gpt.model.models import GPT

    torch.manual_seed(0)
    config = tiny_config(vocab_size=tokenizer.vocab_size, block_size=32)
    model = GPT(config)
    data = torch.tensor(tokenizer.encode(text, allowed_special="all"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains ten times faster on one thread than on a busy two
    try:
        for _ in range(steps):
            starts = torch.randint(0, len(data) - 33, (16,)).tolist()
            x = torch.stack([data[i : i + 32] for i in starts])
            y = torch.stack([data[i + 1 : i + 33] for i in starts])
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    state = {"model." + k: v for k, v in model.state_dict().items()}
    checkpoint = {"hyper_parameters": asdict(config), "state_dict": state, "tokenizer": tokenizer.state_dict()}
    torch.save(checkpoint | extra, path)
    return model.eval()


def smallest_config(**kwargs):
    """A GPTConfig of SMALLEST's sizes, any of them changed by kwargs."""
    from gpt.model.config import GPTConfig

    return GPTConfig(**{**SMALLEST, **kwargs})


# ---- the command line

TINY_MODEL = (
    "--model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.block_size 32 --model.dropout 0.0 "
    "--model.val_sample_tokens 40"
).split()
QUIET = "--trainer.enable_progress_bar false --trainer.enable_model_summary false".split()


def fit_args(corpus: Path, data_dir: Path, steps: int = 12) -> list[str]:
    """`fit` of a tiny model on a small corpus: validation every 6 steps, logs every 2."""
    schedule = f"--model.warmup_steps 4 --trainer.max_steps {steps} --trainer.val_check_interval 6"
    settings = f"--seed_everything 1 --data.batch_size 8 {schedule} --trainer.log_every_n_steps 2"
    return [
        "fit",
        *TINY_MODEL,
        *QUIET,
        *settings.split(),
        "--data.corpus",
        str(corpus),
        "--data.data_dir",
        str(data_dir),
    ]


def samples(stdout: str) -> list[str]:
    """What predict printed, one string a sample (each ends with a line of dashes)."""
    return stdout.split("\n" + "-" * 40 + "\n")[:-1]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, records: list) -> Path:
    """One JSON value a line, UTF-8; the folder made if need be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of a scalar that a run logged to TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


class SignalAtStep(L.Callback):
    """A callback for fault injection, added with --trainer.callbacks+=helpers.SignalAtStep
    (PYTHONPATH=tests): sends this process `signum` `times` times as step `step` begins
    (when="train"), or as the validation after that step begins (when="validation"); under
    DDP only on the process of `rank`, if given."""

    def __init__(self, step: int, signum: int = 15, when: str = "train", times: int = 1, rank: int | None = None):
        self.step, self.signum, self.when, self.times, self.rank, self.sent = step, signum, when, times, rank, False

    def _send(self, trainer: L.Trainer) -> None:
        if self.rank is not None and trainer.global_rank != self.rank:
            return
        if trainer.global_step == self.step and not self.sent:
            self.sent = True
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if self.when == "train":
            self._send(trainer)

    def on_validation_batch_start(self, trainer: L.Trainer, *args) -> None:
        if self.when == "validation" and trainer.state.fn == "fit":
            self._send(trainer)


def noisy_gpt(seed: int = 0, **kwargs):
    """A GPT of TINY's sizes (any changed by kwargs), in eval mode, with large random weights:
    an untrained one at GPT-2's init repeats one id, and any two decoders would agree on that."""
    import torch

    from gpt.model.models import GPT

    torch.manual_seed(seed)
    model = GPT(tiny_config(**kwargs)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 1.0)
    return model
