"""main.py, run as a user runs it: fit, validate, test, the configs, --help and errors.
(predict has tests of its own in test_main_predict.py.)"""

import json
import math
import os
import re
import zipfile

import docstring_parser
import pytest
import torch
import yaml

from gpt.model.config import FIELDS, GPTConfig
from gpt.model.generation import SamplingSettings
from gpt.model.optim import cosine_lr
from gpt.train.lit_module import LitGPT
from helpers import ROOT, assert_clean_error, fit_args, main_here, scalars

SAMPLE_500 = ["--model.sampling.max_new_tokens", "500"]
CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml"))


# ---- fit


def test_the_progress_bar_counts_steps_of_max_steps(small_corpus, tmp_path):
    args = [*fit_args(small_corpus, tmp_path / "data", steps=12), "--trainer.enable_progress_bar", "true"]
    result = main_here(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step: 100%" in result.stdout and "12/12" in result.stdout  # tqdm draws on stdout
    assert "Epoch" not in result.stdout
    resumed = main_here(*args, "--ckpt_path", "last", "--trainer.max_steps", "15", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "12/15" in resumed.stdout and "15/15" in resumed.stdout  # a resumed bar starts where the run stopped


def test_fit_writes_checkpoint_with_tokenizer_and_hyperparameters(trained):
    run_dir, checkpoint, _, corpus = trained
    best = min(scalars(run_dir, "val/loss"), key=lambda step_value: step_value[1])[1]
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["last.ckpt", f"step12-val{best:.3f}.ckpt"]
    ckpt = torch.load(checkpoint, weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 12
    assert ckpt["tokenizer"] == {
        "kind": "char",
        "chars": "".join(sorted(set(corpus.read_text()))),
        "special_tokens": [],
    }
    hparams = ckpt["hyper_parameters"]
    assert hparams["vocab_size"] == len(set(corpus.read_text()))  # linked from the data
    assert (hparams["n_layer"], hparams["n_embd"], hparams["block_size"]) == (2, 32, 32)
    assert "sampling" not in hparams and "causal" not in hparams


def test_fit_logs_scalars_and_samples_to_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _, _, _ = trained
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in "train/loss val/loss val/ppl train/lr train/tokens_per_sec".split():
        assert tag in tags, f"{tag} not in {sorted(tags)}"
    assert "epoch" not in tags and not any(
        tag.startswith(("lr-", "validate/")) for tag in tags
    )  # no flat or twin cards
    lr = scalars(run_dir, "train/lr")
    assert [step for step, _ in lr] == [1, 3, 5, 7, 9, 11]  # every log_every_n_steps=2
    # warmup over 4 steps, then cosine down to min_lr at max_steps=12
    assert [v for _, v in lr] == pytest.approx([cosine_lr(s, 1e-3, 1e-4, 4, 12) for s, _ in lr])
    val_loss = scalars(run_dir, "val/loss")
    assert len(val_loss) == 2  # at steps 6 and 12
    assert scalars(run_dir, "val/ppl")[-1][1] == pytest.approx(math.exp(val_loss[-1][1]), rel=1e-4)
    samples = events.Tensors("val/sample/text_summary")
    assert len(samples) == 2
    about, body = samples[-1].tensor_proto.string_val[0].decode().split("\n\n", 1)
    settings = "temperature 0.8, 40 tokens, seed 1337"
    assert about == f"after 12 steps · prompt '\\n' (none given: the text starts after it) · {settings}"
    text = body.removeprefix("    ").replace("\n    ", "\n")  # Markdown's verbatim indent
    assert 30 < len(text) <= 40 and not text.startswith("\n")  # 40 characters, less any leading newline


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_validate_and_test_from_a_checkpoint_print_the_logged_validation_loss(trained, subcommand):
    run_dir, checkpoint, workdir, corpus = trained
    data = ["--data.corpus", str(corpus), "--data.data_dir", str(workdir / "data")]
    result = main_here(
        subcommand, "--ckpt_path", str(checkpoint), *data, "--trainer.enable_progress_bar=false", cwd=workdir
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Lightning's table, plain or drawn by rich (when installed): the name, then the value.
    prefix = "val" if subcommand == "validate" else "test"
    printed = float(re.search(rf"{prefix}/loss\W+([\d.]+)", result.stdout).group(1))
    (step, logged), *_ = reversed(scalars(run_dir, "val/loss"))
    assert step == 11  # the validation after the last step, whose weights last.ckpt holds
    assert printed == pytest.approx(logged, abs=1e-6)
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["version_0"]  # no run folder of its own


def test_bf16_mixed_trains_the_model_fp32_does(small_corpus, tmp_path):
    """bf16-mixed (with its fused AdamW and gradient clipping) gives a finite validation loss
    close to fp32's after the same steps. (Two DDP ranks equal one process: test_main_scale.py.)"""
    val_loss = {}
    for name, extra in {"fp32": [], "bf16-mixed": ["--trainer.precision", "bf16-mixed"]}.items():
        workdir = tmp_path / name
        workdir.mkdir()
        result = main_here(*fit_args(small_corpus, tmp_path / "data", steps=6), *extra, cwd=workdir)
        assert result.returncode == 0, result.stderr[-3000:]
        ckpt = torch.load(workdir / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
        assert ckpt["global_step"] == 6
        val_loss[name] = scalars(workdir / "lightning_logs" / "version_0", "val/loss")[-1][1]
    untrained = math.log(len(set(small_corpus.read_text())))
    assert all(math.isfinite(v) for v in val_loss.values()), val_loss
    assert val_loss["fp32"] < untrained - 0.1  # it learned: the comparison below has teeth
    assert val_loss["bf16-mixed"] == pytest.approx(val_loss["fp32"], abs=5e-3)


@pytest.mark.parametrize("slowdown", [60.0, 1.1])
def test_bf16_on_a_cpu_without_it_warns_once_with_the_measured_cost(small_corpus, tmp_path, monkeypatch, slowdown):
    """On a CPU that emulates bf16 (AVX2 only: a matmul ~60x slower), one line says what it
    costs; where bf16 is native, nothing. The measurement is replaced here: both CPUs in one
    test, on any machine (`ONEDNN_MAX_CPU_ISA=AVX2` makes a bf16 CPU emulate it for real)."""
    import gpt.train.runtime as runtime

    monkeypatch.setattr(runtime, "cpu_bf16_slowdown", lambda: slowdown)
    monkeypatch.setattr(runtime, "_warned_bf16", [])
    args = [*fit_args(small_corpus, tmp_path / "data", steps=2), "--trainer.precision", "bf16-mixed"]
    args += ["--trainer.limit_val_batches", "1"]
    result = main_here(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "bf16" in line and line.startswith("warning:")]
    if slowdown > 2:
        assert len(lines) == 1 and "takes 60x as long as fp32's" in lines[0] and "32-true" in lines[0], lines
    else:
        assert lines == []
    monkeypatch.setattr(runtime, "_warned_bf16", [])
    again = main_here(*args, "--trainer.precision", "32-true", cwd=tmp_path)  # fp32: nothing to say
    assert again.returncode == 0 and "bf16" not in again.stderr


def test_runs_of_a_config_go_to_a_folder_named_after_it(small_corpus, tmp_path):
    (tmp_path / "configs" / "lab").mkdir(parents=True)
    (tmp_path / "configs" / "lab" / "tiny.yaml").write_text("trainer:\n  max_steps: 2\n  val_check_interval: 2\n")
    args = fit_args(small_corpus, tmp_path / "data", steps=2)
    result = main_here(*args, "--config", "configs/lab/tiny.yaml", "--trainer.max_steps", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "lightning_logs" / "lab_tiny" / "version_0"
    val_loss = scalars(run_dir, "val/loss")[-1][1]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt", f"step2-val{val_loss:.3f}.ckpt"]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "hparams.yaml").is_file()
    # The end of fit says where the checkpoints are and how to sample from them; that command works.
    folder = run_dir.relative_to(tmp_path) / "checkpoints"
    best, last = str(folder / f"step2-val{val_loss:.3f}.ckpt"), str(folder / "last.ckpt")
    said = result.stderr.splitlines()[-3:]
    assert said[0] == f"best checkpoint (val/loss {val_loss:.4f}): {best}"
    assert said[1] == f"last checkpoint: {last}"
    command = said[2].removeprefix("sample from it: ")
    assert command.split() == ["python", "main.py", "predict", "--ckpt_path", last, *SAMPLE_500]
    sample = main_here(*command.split()[2:], "--model.sampling.max_new_tokens", "5", cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr[-3000:]
    assert len(sample.stdout.split("\n" + "-" * 40)[0]) == 1 + 5  # the newline it starts after, 5 characters


@pytest.mark.parametrize("off", ["--trainer.logger=false", "--trainer.enable_checkpointing=false"])
def test_fit_without_a_logger_or_without_checkpoints(small_corpus, tmp_path, off):
    result = main_here(*fit_args(small_corpus, tmp_path / "data", steps=2), off, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    written = {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*") if p.is_file()} - {"small.txt", "data"}
    checkpoints = [p.name for p in tmp_path.rglob("*.ckpt")]
    if "logger" in off:  # no TensorBoard: the checkpoints and the config go to the working folder
        assert written == {"checkpoints", "config.yaml"} and "last.ckpt" in checkpoints
    else:
        assert written == {"lightning_logs"} and checkpoints == []


# ---- settings: --help, --print_config and the configs


def documented(cls) -> dict[str, str]:
    """A dataclass's fields and the first words of each one's docstring."""
    return {p.arg_name: " ".join(p.description.split()[:4]) for p in docstring_parser.parse(cls.__doc__).params}


def help_entries(help_text: str) -> dict[str, str]:
    """--option -> the text after it, whitespace folded, from an argparse --help."""
    entries = re.split(r"\n  (?=--)", help_text)
    return {e.split()[0]: " ".join(e.split()[1:]) for e in entries if e.startswith("--")}


def test_every_model_and_sampling_setting_is_documented_in_help_and_settable(tmp_path):
    result = main_here("fit", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    entries = help_entries(result.stdout)
    # vocab_size follows from the tokenizer and causal from the objective: computed, never typed.
    settable = [f for f in FIELDS if f not in ("vocab_size", "causal")]
    expected = {f"--model.{name}": doc for name, doc in documented(GPTConfig).items() if name in settable}
    expected |= {f"--model.sampling.{name}": doc for name, doc in documented(SamplingSettings).items()}
    assert len(expected) == len(settable) + 10
    for option, doc in expected.items():
        assert option in entries, f"{option} is not in --help"
        assert doc in entries[option], f"{option}: {entries[option]!r} lacks {doc!r}"
    values = {
        "preset": "baby",
        "block_size": "48",
        "n_layer": "3",
        "n_head": "4",
        "n_embd": "64",
        "dropout": "0.1",
        "arch": "gpt",
        "pos": "rope",
        "mlp": "swiglu",
        "norm": "rmsnorm",
        "bias": "false",
        "qkv_bias": "true",
        "tie_weights": "false",
        "rope_base": "500.0",
        "padded_vocab_multiple": "64",
    }
    assert sorted(values) == sorted(settable)
    args = [a for name, value in values.items() for a in (f"--model.{name}", value)]
    args += ["--model.sampling.top_k", "7", "--model.sampling.stop", '["\\n\\n", "ROMEO:"]']
    printed = main_here("fit", *args, "--print_config", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    model = yaml.safe_load(printed.stdout)["model"]
    assert {name: str(model[name]).lower() for name in values} == {k: v.lower() for k, v in values.items()}
    assert model["sampling"]["top_k"] == 7 and model["sampling"]["stop"] == ["\n\n", "ROMEO:"]


@pytest.mark.parametrize(
    "args, shown",
    [
        (
            ["--config", "configs/shakespeare_bpe.yaml"],
            {"kind": "bpe", "vocab_size": 4096, "pattern": "gpt4"},
        ),
        (["--config", "configs/shakespeare_gpt2.yaml"], {"kind": "tiktoken", "encoding": "gpt2"}),
        (["--config", "configs/shakespeare_bpe.yaml", "--data.tokenizer.kind", "char"], {"kind": "char"}),
        (["--data.tokenizer.kind", "tiktoken", "--data.tokenizer.encoding", "cl100k_base"], None),
    ],
)
def test_print_config_shows_only_the_settings_of_the_tokenizer_kind(tmp_path, args, shown):
    args = [str(ROOT / a) if a.startswith("configs/") else a for a in args]
    result = main_here("fit", *args, "--print_config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = shown or {"kind": "tiktoken", "encoding": "cl100k_base"}
    tokenizer = yaml.safe_load(result.stdout)["data"]["tokenizer"]
    assert {k: v for k, v in tokenizer.items() if v is not None} == expected  # bpe's path: null


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data.tokenizer.kind", "nope"], "error: data.tokenizer: kind must be char, tiktoken or bpe"),
        (
            ["--data.tokenizer.kind", "tiktoken", "--data.tokenizer.encoding", "gpt5"],
            "unknown tiktoken encoding 'gpt5'",
        ),
        (
            ["--data.tokenizer.kind", "char", "--data.tokenizer.vocab_size", "512"],
            "error: --data.tokenizer.kind char was given with settings of kind bpe",
        ),
    ],
)
def test_a_tokenizer_setting_of_another_kind_is_refused(tmp_path, args, message):
    result = main_here("fit", *args, cwd=tmp_path)
    assert result.returncode in (1, 2) and message in result.stderr and "Traceback" not in result.stderr


def test_print_config_shows_the_shared_defaults_the_configs_leave_out(tmp_path):
    result = main_here(
        "fit", "--config", str(ROOT / "configs" / "shakespeare_char.yaml"), "--print_config", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "preset: baby" in result.stdout and "n_layer: null" in result.stdout  # the preset's, at instantiation
    config = yaml.safe_load(result.stdout)
    assert "vocab_size" not in config["model"]  # linked from the data's tokenizer, never typed
    assert config["data"]["tokenizer"] is None  # unset: the corpus's characters
    assert config["trainer"]["logger"]["class_path"] == "gpt.train.tensorboard.RunLogger"
    assert config["trainer"]["gradient_clip_val"] == 1.0 and config["trainer"]["check_val_every_n_epoch"] is None
    assert config["checkpoint"]["monitor"] == "val/loss" and config["checkpoint"]["save_last"] is True


@pytest.mark.parametrize("config", CONFIGS)
def test_configs_say_only_what_differs(config):
    text = (ROOT / config).read_text()
    shared_defaults = [
        "TensorBoardLogger",
        "ModelCheckpoint",
        "seed_everything: 1337",
        "gradient_clip_val: 1.0",
        "check_val_every_n_epoch",
        "num_sanity_val_steps",
    ]
    for shared in shared_defaults:
        assert shared not in text, f"{config} repeats {shared}, a default of main.py"


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_parses_and_builds_its_model(config, capsys, monkeypatch):
    from main import cli_main

    monkeypatch.setattr("sys.argv", ["main.py"])  # the arguments are cli_main's, not pytest's
    with pytest.raises(SystemExit) as exit:  # in this process: a parse costs no startup
        cli_main(["fit", "--config", str(ROOT / config), "--print_config"])
    assert exit.value.code in (0, None) and "model:" in capsys.readouterr().out
    model_args = yaml.safe_load((ROOT / config).read_text())["model"]
    sampling = SamplingSettings(**model_args.pop("sampling", {}))
    with torch.device("meta"):  # shapes without memory: GPT-2 medium builds in a moment
        module = LitGPT(**model_args, vocab_size=65, sampling=sampling)
        assert module.model(torch.zeros(1, 8, dtype=torch.long)).shape == (1, 8, 65)
    assert module.config.arch == model_args.get("arch", "gpt")


def test_block_size_reaches_the_data_from_the_model_or_its_preset():
    from gpt.train.cli import model_block_size

    assert model_block_size("baby", None) == 256
    assert model_block_size("baby", 64) == 64
    assert model_block_size(None, None) == 1024  # GPTConfig's default, GPT-2's context
    assert model_block_size("gpt5", None) == 1024  # refused with the known presets when the model is built


def test_preset_from_the_command_line_sets_the_model_and_the_windows(small_corpus, tmp_path):
    args = fit_args(small_corpus, tmp_path / "data", steps=2)
    i = args.index("--model.block_size")
    del args[i : i + 2]  # the preset's 256 instead
    result = main_here(*args, "--model.preset", "baby", "--trainer.val_check_interval", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = torch.load(next((tmp_path / "lightning_logs").rglob("last.ckpt")), weights_only=True)
    assert ckpt["hyper_parameters"]["preset"] == "baby"
    state = ckpt["state_dict"]
    assert state["model.transformer.wpe.weight"].shape == (256, 32)  # baby's context, the command line's width
    assert "model.transformer.h.0.attn.c_attn.bias" not in state  # baby has no biases
    assert len({k.split(".")[3] for k in state if k.startswith("model.transformer.h.")}) == 2


# ---- other tokenizers


def test_bpe_fit_saves_tokenizer_file_and_checkpoint_state(trained_bpe):
    _, checkpoint, workdir, _ = trained_bpe
    ckpt = torch.load(checkpoint, weights_only=True, map_location="cpu")
    state = ckpt["tokenizer"]
    assert state["kind"] == "bpe" and len(state["merges"]) == 300 - 256 - 3
    assert state["special_tokens"] == ["<|endoftext|>", "<|pad|>", "<|mask|>"]
    assert ckpt["hyper_parameters"]["vocab_size"] == 300
    (saved,) = (workdir / "data" / "tokenizers").glob("bpe-*.json")
    assert json.loads(saved.read_text()) == state


def test_bpe_fit_logs_bits_per_character(trained_bpe):
    run_dir, _, _, _ = trained_bpe
    loss, bpc = scalars(run_dir, "val/loss")[-1][1], scalars(run_dir, "val/bpc")[-1][1]
    # bits per character = nats per token / ln 2 / characters per token; a 300-token BPE
    # packs between 1 and 3 characters into a token on this text.
    assert loss / math.log(2) / 3 < bpc < loss / math.log(2)


def test_teaching_arch_trains_and_predicts_from_its_checkpoint(small_corpus, tmp_path):
    args = fit_args(small_corpus, tmp_path / "data", steps=4)
    result = main_here(*args, "--model.arch", "multi_head", "--trainer.val_check_interval", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = next((tmp_path / "lightning_logs").rglob("last.ckpt"))
    assert torch.load(checkpoint, weights_only=True)["hyper_parameters"]["arch"] == "multi_head"
    # The checkpoint's hyperparameters rebuild the same model: no config needed.
    settings = "--data.prompt First --model.sampling.max_new_tokens 20".split()
    out = main_here("predict", "--ckpt_path", str(checkpoint), *settings, cwd=tmp_path / "data")
    assert out.returncode == 0, out.stderr[-3000:]
    (sample,) = out.stdout.split("\n" + "-" * 40 + "\n")[:-1]
    assert sample.startswith("First") and len(sample) == 5 + 20


# ---- errors a user can cause: one line, no traceback, before any work


def test_error_missing_corpus(tmp_path):
    assert_clean_error(
        main_here("fit", "--data.corpus", "nope.txt", cwd=tmp_path), "error: corpus file 'nope.txt' does not exist"
    )


def test_error_corpus_too_short(tmp_path):
    (tmp_path / "short.txt").write_text("to be or not to be " * 10)
    result = main_here(*fit_args(tmp_path / "short.txt", tmp_path / "data"), cwd=tmp_path)
    assert_clean_error(result, "fewer than block_size + 1 = 33 needed for one example")


def test_error_missing_checkpoint(tmp_path):
    assert_clean_error(
        main_here("validate", "--ckpt_path", "nope.ckpt", cwd=tmp_path), "checkpoint 'nope.ckpt' does not exist"
    )


def test_error_not_a_checkpoint(trained, tmp_path):
    _, checkpoint, _, corpus = trained
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:2000])
    for path in (corpus, truncated):
        result = main_here("validate", "--ckpt_path", str(path), cwd=tmp_path)
        assert_clean_error(result, f"{str(path)!r} is not a PyTorch checkpoint (no zip archive in it")


def damaged(checkpoint, folder, how: str):
    """A copy of a good checkpoint, spoiled one way."""
    path = folder / f"{how}.ckpt"
    if how == "a folder":
        path.mkdir()
    elif how == "a zip of something else":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "not a checkpoint")
    elif how == "a byte changed":
        data = bytearray(checkpoint.read_bytes())
        data[len(data) // 2] ^= 0xFF  # inside the weights
        path.write_bytes(bytes(data))
    else:
        ckpt = torch.load(checkpoint, weights_only=True)
        if how == "planted code":
            ckpt["planted"] = Planted()
        else:  # NaN weights
            ckpt["state_dict"]["model.transformer.h.0.attn.c_attn.weight"][0, 0] = float("nan")
        torch.save(ckpt, path)
    return path


class Planted:
    def __reduce__(self):  # what loading with weights_only=False would run
        return (os.system, ("touch planted-code-ran",))


@pytest.mark.parametrize(
    "how, message",
    [
        ("a folder", "a folder.ckpt: there are no runs in"),
        ("a zip of something else", "is a zip archive but not a PyTorch checkpoint"),
        ("a byte changed", "fails its checksum"),
        ("planted code", "loading it could run code, so it is refused"),
        ("NaN weights", "holds NaN or Inf in state_dict.model.transformer.h.0.attn.c_attn.weight"),
    ],
)
def test_damaged_or_unsafe_checkpoints_are_refused_by_name(trained, tmp_path, how, message):
    _, checkpoint, _, corpus = trained
    path = damaged(checkpoint, tmp_path, how)
    result = main_here("validate", "--ckpt_path", str(path), "--data.corpus", str(corpus), cwd=tmp_path)
    assert_clean_error(result, message)
    assert "is damaged:" in result.stderr or how != "a byte changed"
    assert not (tmp_path / "planted-code-ran").exists()


def test_error_bad_tokenizer_settings(tmp_path):
    result = main_here("fit", "--data.tokenizer.kind", "tiktoken", "--data.tokenizer.encoding", "gpt5", cwd=tmp_path)
    assert_clean_error(result, "error: data.tokenizer: unknown tiktoken encoding 'gpt5'; known encodings: gpt2")
    result = main_here("fit", "--data.tokenizer.kind", "bpe", "--data.tokenizer.vocab_size", "200", cwd=tmp_path)
    assert_clean_error(result, "error: data.tokenizer: BPE vocab_size 200 is too small")


@pytest.mark.parametrize(
    "extra, message",
    [
        ("--model.preset gpt5", "error: unknown preset 'gpt5'; known presets: gpt2, gpt2-medium, gpt2-large, gpt2-xl"),
        ("--model.n_embd 30 --model.n_head 4", "error: n_embd (30) must be divisible by n_head (4)"),
        (
            "--model.n_embd 36 --model.n_head 4 --model.pos rope",
            "error: RoPE rotates pairs of dimensions, so the head size must be even; n_embd 36 / n_head 4 = 9",
        ),
        ("--model.arch bigram --model.mlp swiglu", "error: mlp=swiglu: options of arch 'gpt'"),
        ("--model.learning_rate 0 --model.min_lr 0", "error: learning_rate must be > 0, got 0.0"),
        ("--model.learning_rate 1e-4 --model.min_lr 1e-3", "error: need 0 <= min_lr <= learning_rate"),
        ("--trainer.max_steps -5", "must be a non-negative integer or -1"),
    ],
)
def test_error_bad_model_settings(extra, message, small_corpus, tmp_path):
    result = main_here(*fit_args(small_corpus, tmp_path / "data", steps=2), *extra.split(), cwd=tmp_path)
    assert_clean_error(result, message)


def test_a_value_of_the_wrong_type_is_one_line(tmp_path):
    result = main_here("fit", "--trainer.max_steps", "abc", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        """error: Parser key "trainer.max_steps": Expected a <class 'int'>. Got value: abc""",
        "(python main.py fit --help lists the options)",
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            "--data.tokenizer.kind tiktoken --data.tokenizer.encoding gpt2",
            "error: objective masked needs a <|mask|> token, which the tokenizer (TiktokenTokenizer('gpt2'",
        ),
        ("--model.mask_prob 0", "error: mask_prob must be in (0, 1), got 0.0"),
    ],
)
def test_error_bad_masked_settings_before_any_work(small_corpus, tmp_path, extra, message):
    result = main_here(
        "fit", "--data.corpus", str(small_corpus), "--model.objective", "masked", *extra.split(), cwd=tmp_path
    )
    assert_clean_error(result, message)
    assert not (tmp_path / "lightning_logs").exists()
