"""The commands a user types, run as subprocesses: fit, predict, validate, test, errors."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import run_main
from gpt.lit_module import LitGPT, cosine_lr

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout flushed by the code itself

TINY_MODEL = [
    "--model.n_layer", "2", "--model.n_head", "2", "--model.n_embd", "32", "--model.block_size", "32",
    "--model.dropout", "0.0", "--model.val_sample_tokens", "40",
]  # fmt: skip
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit_args(corpus: Path, data_dir: Path, steps: int = 12) -> list[str]:
    return [
        "fit", *TINY_MODEL, *QUIET, "--seed_everything", "1",
        "--data.corpus", str(corpus), "--data.data_dir", str(data_dir), "--data.batch_size", "8",
        "--model.warmup_steps", "4", "--trainer.max_steps", str(steps), "--trainer.val_check_interval", "6",
        "--trainer.log_every_n_steps", "2",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short CLI fit, shared by the tests below: (run folder, checkpoint, corpus)."""
    workdir = tmp_path_factory.mktemp("fit")
    corpus = workdir / "corpus.txt"
    corpus.write_text(("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n") * 60)
    result = run_main(*fit_args(corpus, workdir / "data"), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = workdir / "lightning_logs" / "version_0"
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert checkpoints, f"no checkpoint in {run_dir}"
    return run_dir, checkpoints[-1], corpus


def test_fit_writes_checkpoint_with_tokenizer_and_hyperparameters(trained):
    _, checkpoint, corpus = trained
    ckpt = torch.load(checkpoint, weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 12
    assert ckpt["tokenizer"] == {"kind": "char", "chars": "".join(sorted(set(corpus.read_text()))), "special_tokens": []}
    hparams = ckpt["hyper_parameters"]
    assert hparams["vocab_size"] == len(set(corpus.read_text()))  # linked from the data
    assert (hparams["n_layer"], hparams["n_embd"], hparams["block_size"]) == (2, 32, 32)


def test_fit_logs_scalars_and_samples_to_tensorboard(trained):
    run_dir, _, _ = trained
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ["train/loss", "val/loss", "val/ppl", "lr-AdamW/decay", "lr-AdamW/no_decay", "train/device/items_per_sec"]:
        assert tag in scalars, f"{tag} not in {sorted(scalars)}"
    lr = [(e.step, e.value) for e in events.Scalars("lr-AdamW/decay")]
    assert [step for step, _ in lr] == [1, 3, 5, 7, 9, 11]  # every log_every_n_steps=2
    # warmup over 4 steps, then cosine down to min_lr at max_steps=12
    assert [v for _, v in lr] == pytest.approx([cosine_lr(s, 1e-3, 1e-4, 4, 12) for s, _ in lr])
    val_loss = events.Scalars("val/loss")
    assert len(val_loss) == 2  # at steps 6 and 12
    ppl = events.Scalars("val/ppl")
    assert ppl[-1].value == pytest.approx(torch.tensor(val_loss[-1].value).exp().item(), rel=1e-4)
    samples = events.Tensors("val/sample/text_summary")
    assert len(samples) == 2
    text = samples[-1].tensor_proto.string_val[0].decode()
    assert len(text.replace("\n    ", "\n")) == 4 + 1 + 40  # indent + "\n" prompt + 40 tokens


def predict(checkpoint: Path, cwd: Path, *extra: str):
    return run_main("predict", "--ckpt_path", str(checkpoint), "--data.corpus", "missing.txt", *extra, cwd=cwd)


def samples(stdout: str) -> list[str]:
    return stdout.split("\n" + "-" * 40 + "\n")[:-1]


def test_predict_without_the_corpus(trained, tmp_path):
    _, checkpoint, _ = trained
    # A fresh folder, no corpus, no data cache, no config: only the checkpoint.
    result = predict(checkpoint, tmp_path, "--data.prompt", "First", "--model.max_new_tokens", "50",
                     "--data.num_samples", "2", "--model.sample_seed", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    texts = samples(result.stdout)
    assert len(texts) == 2
    assert all(t.startswith("First") and len(t) == 5 + 50 for t in texts)
    assert texts[0] != texts[1]
    assert not (tmp_path / "lightning_logs").exists()  # predict leaves no run folder


def test_predict_same_seed_same_text(trained, tmp_path):
    _, checkpoint, _ = trained
    runs = [predict(checkpoint, tmp_path, "--model.max_new_tokens", "30", "--model.sample_seed", s) for s in "778"]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-3000:]
    a, b, c = (samples(r.stdout) for r in runs)
    assert a == b
    assert a != c


def test_predict_greedy_is_deterministic_and_escapes_newlines(trained, tmp_path):
    _, checkpoint, _ = trained
    args = ("--model.temperature", "0", "--model.max_new_tokens", "20", "--data.prompt", "All:\\n")
    a, b = predict(checkpoint, tmp_path, *args, "--model.sample_seed", "1"), predict(checkpoint, tmp_path, *args)
    assert a.returncode == 0, a.stderr[-3000:]
    assert samples(a.stdout) == samples(b.stdout)
    assert samples(a.stdout)[0].startswith("All:\n")


def test_validate_and_test_from_checkpoint(trained):
    run_dir, checkpoint, corpus = trained
    for subcommand in ("validate", "test"):
        result = run_main(subcommand, "--ckpt_path", str(checkpoint), "--data.corpus", str(corpus),
                          "--data.data_dir", str(run_dir.parent.parent / "data"), *QUIET,
                          cwd=run_dir.parent.parent)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        # Lightning's table, plain or drawn by rich (when installed): the name, then the value.
        assert re.search(rf"{'val' if subcommand == 'validate' else 'test'}/loss\W+\d", result.stdout)


def test_print_config(tmp_path):
    result = run_main("fit", "--config", str(Path(__file__).parents[1] / "configs" / "shakespeare_char.yaml"),
                      "--print_config", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "preset: baby" in result.stdout and "n_layer: null" in result.stdout  # the preset's, at instantiation
    config = yaml.safe_load(result.stdout)
    assert "vocab_size" not in config["model"]  # linked from the data's tokenizer, never typed
    assert config["data"]["tokenizer"]["kind"] == "char"


def test_block_size_reaches_the_data_from_the_model_or_its_preset():
    from main import model_block_size

    assert model_block_size("baby", None) == 256
    assert model_block_size("baby", 64) == 64
    assert model_block_size(None, None) == 1024  # GPTConfig's default, GPT-2's context
    assert model_block_size("gpt5", None) == 1024  # refused with the known presets when the model is built


def assert_clean_error(result, message: str) -> None:
    assert result.returncode == 1
    assert message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_error_missing_corpus(tmp_path):
    result = run_main("fit", "--data.corpus", "nope.txt", cwd=tmp_path)
    assert_clean_error(result, "error: corpus file 'nope.txt' does not exist")


def test_error_corpus_too_short(tmp_path):
    (tmp_path / "short.txt").write_text("to be or not to be " * 10)
    result = run_main(*fit_args(tmp_path / "short.txt", tmp_path / "data"), cwd=tmp_path)
    assert_clean_error(result, "fewer than block_size + 1 = 33 needed for one example")


def test_error_unknown_character_in_prompt(trained, tmp_path):
    _, checkpoint, _ = trained
    result = predict(checkpoint, tmp_path, "--data.prompt", "Fi#")
    assert_clean_error(result, "character '#' at position 2 is not in the tokenizer's vocabulary")


def test_error_empty_prompt(trained, tmp_path):
    _, checkpoint, _ = trained
    result = predict(checkpoint, tmp_path, "--data.prompt", "")
    assert_clean_error(result, "the prompt is empty")


def test_error_missing_checkpoint(tmp_path):
    result = run_main("predict", "--ckpt_path", "nope.ckpt", cwd=tmp_path)
    assert_clean_error(result, "checkpoint 'nope.ckpt' does not exist")


def test_error_not_a_checkpoint(trained, tmp_path):
    _, checkpoint, corpus = trained
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:2000])
    for path in (corpus, truncated):
        result = run_main("predict", "--ckpt_path", str(path), cwd=tmp_path)
        assert_clean_error(result, f"{str(path)!r} is not a PyTorch checkpoint")


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["--trainer.precision", "bf16-mixed"], id="bf16-mixed"),
        pytest.param(["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"], id="ddp"),
    ],
)
def test_scale_out_through_lightning(extra, small_corpus, tmp_path):
    result = run_main(*fit_args(small_corpus, tmp_path / "data", steps=6), *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = torch.load(next((tmp_path / "lightning_logs").rglob("*.ckpt")), weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 6


# ---------------------------------------------------------------- other tokenizers


@pytest.fixture(scope="module")
def trained_bpe(tmp_path_factory, request):
    """A short CLI fit with a 300-token BPE trained on the corpus: (run folder, checkpoint, workdir)."""
    workdir = tmp_path_factory.mktemp("fit_bpe")
    corpus = workdir / "corpus.txt"
    corpus.write_text(("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n") * 60)
    args = [*fit_args(corpus, workdir / "data"), "--data.tokenizer.kind", "bpe", "--data.tokenizer.vocab_size", "300"]
    result = run_main(*args, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = workdir / "lightning_logs" / "version_0"
    return run_dir, sorted((run_dir / "checkpoints").glob("*.ckpt"))[-1], workdir


def test_bpe_fit_saves_tokenizer_file_and_checkpoint_state(trained_bpe):
    _, checkpoint, workdir = trained_bpe
    ckpt = torch.load(checkpoint, weights_only=True, map_location="cpu")
    state = ckpt["tokenizer"]
    assert state["kind"] == "bpe" and len(state["merges"]) == 300 - 256 - 3
    assert state["special_tokens"] == ["<|endoftext|>", "<|pad|>", "<|mask|>"]
    assert ckpt["hyper_parameters"]["vocab_size"] == 300
    (saved,) = (workdir / "data" / "tokenizers").glob("bpe-*.json")
    assert json.loads(saved.read_text()) == state


def test_bpe_fit_logs_bits_per_character(trained_bpe):
    run_dir, _, _ = trained_bpe
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    loss, bpc = events.Scalars("val/loss")[-1].value, events.Scalars("val/bpc")[-1].value
    # bits per character = nats per token / ln 2 / characters per token; a 300-token BPE
    # packs between 1 and 3 characters into a token on this text.
    assert loss / math.log(2) / 3 < bpc < loss / math.log(2)


def test_bpe_predict_without_the_corpus_takes_any_text(trained_bpe, tmp_path):
    _, checkpoint, _ = trained_bpe
    prompt = "Citizen 🙂 naïve"  # characters the corpus never had: bytes are always in the vocabulary
    runs = [predict(checkpoint, tmp_path, "--data.prompt", prompt, "--model.max_new_tokens", "20") for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr[-3000:]
    texts = samples(runs[0].stdout)
    assert len(texts) == 1 and texts[0].startswith(prompt) and len(texts[0]) > len(prompt)
    assert samples(runs[1].stdout) == texts


def test_error_checkpoint_tokenizer_does_not_fit_the_model(trained_bpe, tmp_path):
    _, checkpoint, _ = trained_bpe
    ckpt = torch.load(checkpoint, weights_only=True, map_location="cpu")
    ckpt["tokenizer"] = {"kind": "tiktoken", "encoding": "gpt2"}
    torch.save(ckpt, tmp_path / "mixed.ckpt")
    result = predict(tmp_path / "mixed.ckpt", tmp_path)
    assert_clean_error(result, "the checkpoint's tokenizer has 50257 tokens but its model has vocab_size 300")


def test_gpt2_tokenizer_fit_and_predict(small_corpus, tmp_path):
    args = [*fit_args(small_corpus, tmp_path / "data", steps=6), "--data.tokenizer.kind", "tiktoken",
            "--data.tokenizer.encoding", "gpt2", "--model.val_sample_tokens", "0"]  # fmt: skip
    result = run_main(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = next((tmp_path / "lightning_logs").rglob("*.ckpt"))
    ckpt = torch.load(checkpoint, weights_only=True, map_location="cpu")
    assert ckpt["tokenizer"] == {"kind": "tiktoken", "encoding": "gpt2"}
    assert ckpt["hyper_parameters"]["vocab_size"] == 50257
    out = predict(checkpoint, tmp_path, "--data.prompt", "Every effort moves you", "--model.max_new_tokens", "5")
    assert out.returncode == 0, out.stderr[-3000:]
    assert samples(out.stdout)[0].startswith("Every effort moves you")


@pytest.mark.parametrize("name, kind", [("shakespeare_gpt2", "tiktoken"), ("shakespeare_bpe", "bpe")])
def test_tokenizer_configs_parse(name, kind, tmp_path):
    result = run_main("fit", "--config", str(Path(__file__).parents[1] / "configs" / f"{name}.yaml"),
                      "--print_config", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["data"]["tokenizer"]["kind"] == kind


def test_error_bad_tokenizer_settings(tmp_path):
    result = run_main("fit", "--data.tokenizer.kind", "tiktoken", "--data.tokenizer.encoding", "gpt5", cwd=tmp_path)
    assert_clean_error(result, "error: unknown tiktoken encoding 'gpt5'; known encodings: gpt2, r50k_base")
    result = run_main("fit", "--data.tokenizer.kind", "bpe", "--data.tokenizer.vocab_size", "200", cwd=tmp_path)
    assert_clean_error(result, "error: BPE vocab_size 200 is too small")


@pytest.mark.parametrize("config", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml")))
def test_every_config_builds_its_model(config):
    """Each config's model section makes a model (vocab_size comes from the data at run time)."""
    model_args = yaml.safe_load((ROOT / config).read_text())["model"]
    module = LitGPT(**model_args, vocab_size=65)
    if "arch" in model_args:
        assert module.config.arch == model_args["arch"]
    assert module.model(torch.zeros(1, 8, dtype=torch.long)).shape == (1, 8, 65)


def test_teaching_arch_trains_and_predicts_from_its_checkpoint(small_corpus, tmp_path):
    args = fit_args(small_corpus, tmp_path / "data", steps=4)
    result = run_main(*args, "--model.arch", "multi_head", "--trainer.val_check_interval", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (checkpoint,) = (tmp_path / "lightning_logs").rglob("*.ckpt")
    assert torch.load(checkpoint, weights_only=True)["hyper_parameters"]["arch"] == "multi_head"
    # The checkpoint's hyperparameters rebuild the same model: no config needed.
    out = predict(checkpoint, tmp_path / "data", "--data.prompt", "First", "--model.max_new_tokens", "20")
    assert out.returncode == 0, out.stderr[-3000:]
    (sample,) = samples(out.stdout)
    assert sample.startswith("First") and len(sample) == 5 + 20


def test_preset_from_the_command_line_sets_the_model_and_the_windows(small_corpus, tmp_path):
    args = fit_args(small_corpus, tmp_path / "data", steps=2)
    i = args.index("--model.block_size")
    del args[i : i + 2]  # the preset's 256 instead
    result = run_main(*args, "--model.preset", "baby", "--trainer.val_check_interval", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (checkpoint,) = (tmp_path / "lightning_logs").rglob("*.ckpt")
    ckpt = torch.load(checkpoint, weights_only=True)
    assert ckpt["hyper_parameters"]["preset"] == "baby"
    state = ckpt["state_dict"]
    assert state["model.transformer.wpe.weight"].shape == (256, 32)  # baby's context, the command line's width
    assert "model.transformer.h.0.attn.c_attn.bias" not in state  # baby has no biases
    assert len({k.split(".")[3] for k in state if k.startswith("model.transformer.h.")}) == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model.preset", "gpt5"], "error: unknown preset 'gpt5'; known presets: gpt2, gpt2-medium, gpt2-large, gpt2-xl, baby"),
        (["--model.n_embd", "30", "--model.n_head", "4"], "error: n_embd (30) must be divisible by n_head (4)"),
        (["--model.n_embd", "36", "--model.n_head", "4", "--model.pos", "rope"],
         "error: RoPE rotates pairs of dimensions, so the head size must be even; n_embd 36 / n_head 4 = 9"),
        (["--model.arch", "bigram", "--model.mlp", "swiglu"], "error: mlp=swiglu: options of arch 'gpt'"),
    ],
)  # fmt: skip
def test_error_bad_model_settings(extra, message, small_corpus, tmp_path):
    result = run_main(*fit_args(small_corpus, tmp_path / "data", steps=2), *extra, cwd=tmp_path)
    assert_clean_error(result, message)


# ---- predict: prompts, controls, streaming, the JSON-lines writer


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_prompts_from_a_file_with_samples_in_order_and_saved_as_json_lines(trained, tmp_path):
    _, checkpoint, _ = trained
    (tmp_path / "prompts.jsonl").write_text('"First"\n{"prompt": "All:\\nSp"}\n\n"Be"\n', encoding="utf-8")
    writer = ["--trainer.callbacks+=gpt.callbacks.JSONLinesWriter", "--trainer.callbacks.path", "out/samples.jsonl"]
    result = predict(checkpoint, tmp_path, "--data.prompts_file", "prompts.jsonl", "--data.num_samples", "2",
                     "--model.max_new_tokens", "25", "--model.stop_at_eot", "false", *writer)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_jsonl(tmp_path / "out" / "samples.jsonl")
    assert [(r["index"], r["sample"], r["prompt"]) for r in records] == [
        (0, 0, "First"), (0, 1, "First"), (1, 0, "All:\nSp"), (1, 1, "All:\nSp"), (2, 0, "Be"), (2, 1, "Be"),
    ]  # fmt: skip
    assert all(len(r["completion"]) == 25 and r["finish"] == "length" for r in records)
    assert records[0]["completion"] != records[1]["completion"]  # two samples, not one twice
    assert records[0]["settings"] == {"max_new_tokens": 25, "temperature": 0.8, "top_k": None, "top_p": None,
                                      "stop": [], "stop_at_eot": False, "kv_cache": True, "seed": 1337}  # fmt: skip
    assert samples(result.stdout) == [r["prompt"] + r["completion"] for r in records]  # what was printed


def test_batched_and_streamed_greedy_predict_agree(trained, tmp_path):
    _, checkpoint, _ = trained
    (tmp_path / "prompts.txt").write_text("First\nAll:\\nSpeak\nFirst C\nAll\n", encoding="utf-8")
    args = ["--data.prompts_file", "prompts.txt", "--model.max_new_tokens", "30", "--model.temperature", "0"]
    streamed = predict(checkpoint, tmp_path, *args)
    batched = predict(checkpoint, tmp_path, *args, "--model.stream", "false", "--data.batch_size", "4")
    uncached = predict(checkpoint, tmp_path, *args, "--model.kv_cache", "false")
    assert streamed.returncode == batched.returncode == uncached.returncode == 0, batched.stderr[-3000:]
    texts = samples(streamed.stdout)
    assert [t[: len(p)] for t, p in zip(texts, ["First", "All:\nSpeak", "First C", "All"])] == ["First", "All:\nSpeak", "First C", "All"]
    assert samples(batched.stdout) == texts == samples(uncached.stdout)


def test_stop_strings_and_no_prompt(trained, tmp_path):
    _, checkpoint, _ = trained
    writer = ["--trainer.callbacks+=gpt.callbacks.JSONLinesWriter", "--trainer.callbacks.path", "s.jsonl"]
    result = run_main("predict", "--ckpt_path", str(checkpoint), "--model.max_new_tokens", "200", "--model.stop",
                      '[":", "zz"]', "--data.num_samples", "3", *writer, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_jsonl(tmp_path / "s.jsonl")
    assert all(r["prompt"] is None and ":" not in r["completion"] for r in records)
    assert [r["finish"] for r in records] == ["stop"] * 3  # every speaker's name ends in ":"
    assert all(s.startswith("\n") for s in samples(result.stdout))  # no prompt: text starts after a newline


def test_predict_streams_while_it_writes(trained, tmp_path):
    _, checkpoint, _ = trained
    command = [sys.executable, str(ROOT / "main.py"), "predict", "--ckpt_path", str(checkpoint), "--data.prompt",
               "First", "--model.max_new_tokens", "20000", "--model.temperature", "1.0"]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV)
    try:
        first = process.stdout.read(200)  # arrives long before the 20,000th token
        assert first.startswith(b"First") and len(first) == 200
        assert process.poll() is None  # still writing
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model.top_p", "1.5"], "error: top_p must be in (0, 1] (or None for no limit), got 1.5"),
        (["--model.temperature", "-1"], "error: temperature must be >= 0 (0 means greedy), got -1.0"),
        (["--model.top_k", "0"], "error: top_k must be >= 1 (or None for no limit), got 0"),
        (["--model.max_new_tokens", "-5"], "error: max_new_tokens must be >= 0, got -5"),
        (["--data.prompts_file", "nope.txt"], "error: prompts file 'nope.txt' does not exist"),
    ],
)
def test_error_bad_predict_settings(trained, tmp_path, extra, message):
    _, checkpoint, _ = trained
    assert_clean_error(predict(checkpoint, tmp_path, *extra), message)
