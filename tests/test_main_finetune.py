"""Fine-tuning through main.py as a user runs it: a small model pretrained here, then SFT with
the chat template, LoRA, DPO; exact resume after a signal for each; predict and chat from the
checkpoints; the errors a user can cause."""

import json
import subprocess
import sys

import pytest
import torch

from gpt.interop.checkpoint import load_chat_model, load_model
from helpers import (
    LINES_TEXT,
    ROOT,
    TINY_MODEL,
    assert_clean_error,
    main_here,
    read_jsonl,
    samples,
    scalars,
    write_jsonl,
)

pytestmark = pytest.mark.slow  # several fits through the command line each

WORDS = "apple river stone cloud music green tiger paper candle silver window garden".split()
BASE = [
    *TINY_MODEL,
    *"--model.block_size 256 --trainer.enable_progress_bar false --trainer.enable_model_summary false".split(),
]
BASE += "--seed_everything 1 --model.warmup_steps 2 --trainer.log_every_n_steps 1 --model.val_sample_tokens 0".split()
STEPS = "--trainer.max_steps 8 --trainer.val_check_interval 4 --data.batch_size 4".split()


def records(folder):
    """Alpaca records a tiny model can learn (repeat a word), and preference pairs of them."""
    rows = [{"instruction": f"Say {w}.", "input": "", "output": f"{w}!"} for w in WORDS * 4]
    pairs = [r | {"chosen": r["output"], "rejected": "no."} for r in rows]
    return write_jsonl(folder / "sft.jsonl", rows), write_jsonl(folder / "pairs.jsonl", pairs)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny GPT with a 300-token BPE, pretrained for a few steps here."""
    folder = tmp_path_factory.mktemp("pretrained")
    (folder / "corpus.txt").write_text(LINES_TEXT)
    args = ["fit", *BASE, *STEPS, "--data.corpus", "corpus.txt", "--data.tokenizer.kind", "bpe"]
    result = main_here(*args, "--data.tokenizer.vocab_size", "300", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def fit(folder, *extra, ckpt=None):
    args = ["fit", *BASE, *STEPS, *extra, *(["--ckpt_path", ckpt] if ckpt else [])]
    return main_here(*args, cwd=folder)


def logged(folder, tags=("train/loss", "val/loss", "train/lr")) -> dict:
    return {tag: scalars(folder / "lightning_logs" / "version_0", tag) for tag in tags}


def test_sft_with_the_chat_template_grows_the_vocabulary_and_scores_replies(pretrained, tmp_path):
    sft, _ = records(tmp_path)
    result = fit(
        tmp_path,
        "--model.init_from",
        str(pretrained.parent.parent.parent),
        "--data.instructions.path",
        str(sft),
        "--data.instructions.template",
        "chat",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"--model.init_from {pretrained.parent.parent.parent}: {pretrained}" in result.stderr  # its newest run
    assert "4 new token rows at the mean embedding" in result.stderr
    checkpoint = torch.load(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["template"] == "chat" and checkpoint["hyper_parameters"]["vocab_size"] == 304
    base = torch.load(pretrained, weights_only=True)["state_dict"]["model.transformer.wte.weight"]
    grown = load_model(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt")[0].transformer.wte.weight
    assert grown.shape == (304, 32) and base.shape == (300, 32)
    run = tmp_path / "lightning_logs" / "version_0"
    assert scalars(run, "train/tokens_per_example")  # TensorBoard: how long the examples are
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"tensors": 0})
    events.Reload()
    answers = events.Tensors("val/answers/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert answers.count("the data: ") == 3 and "**Say" in answers


@pytest.mark.parametrize("variant", ["sft", "lora", "dpo", "dpo lora"])
def test_an_interrupted_fine_tuning_resumes_exactly(pretrained, tmp_path, variant):
    sft, pairs = records(tmp_path)
    data = ["--data.instructions.path", str(pairs if "dpo" in variant else sft)]
    extra = [*data, "--model.init_from", str(pretrained), "--data.instructions.template", "alpaca"]
    extra += ["--model.objective", "dpo"] if "dpo" in variant else []
    extra += ["--model.lora", "{r: 4, alpha: 8}"] if "lora" in variant else []
    reference = tmp_path / "reference"
    reference.mkdir()
    assert fit(reference, *extra).returncode == 0
    folder = tmp_path / "stopped"
    folder.mkdir()
    stopped = fit(folder, *extra, "--trainer.callbacks+=helpers.SignalAtStep", "--trainer.callbacks.step", "5")
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    resumed = fit(folder, *extra, ckpt="last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    tags = ("train/loss", "val/loss") + (("val/reward_margin",) if "dpo" in variant else ())
    assert logged(folder, tags) == logged(reference, tags)  # every value, to the bit
    last = folder / "lightning_logs/version_0/checkpoints/last.ckpt"
    if "lora" in variant:  # the adapters alone, naming their base
        checkpoint = torch.load(last, weights_only=True)
        assert checkpoint["lora_base"] == str(pretrained.resolve())  # absolute: found from any folder
        assert all("lora_" in k for k in checkpoint["state_dict"]) and last.stat().st_size < pretrained.stat().st_size


def test_predict_and_chat_from_a_fine_tuned_checkpoint(pretrained, tmp_path):
    sft, pairs = records(tmp_path)
    chat = ["--data.instructions.template", "chat", "--model.init_from", str(pretrained)]
    assert fit(tmp_path, "--data.instructions.path", str(sft), *chat).returncode == 0
    sft_ckpt = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"
    # DPO with LoRA from it: the chat tokens are there now, and auto keeps its chat template.
    dpo = ["--model.init_from", str(sft_ckpt), "--model.objective", "dpo", "--model.lora", "{r: 4}"]
    assert fit(tmp_path, "--data.instructions.path", str(pairs), *dpo).returncode == 0
    ckpt = tmp_path / "lightning_logs/version_1/checkpoints/last.ckpt"
    assert torch.load(ckpt, weights_only=True)["template"] == "chat"
    prompts = write_jsonl(tmp_path / "chats.jsonl", [{"messages": [{"role": "user", "content": "Say river."}]}])
    sampling = "--model.sampling.temperature 0 --model.sampling.max_new_tokens 12".split()
    writer = ["--trainer.callbacks+=gpt.train.callbacks.JSONLinesWriter", "--trainer.callbacks.path", "out.jsonl"]
    # The run folder: its newest last.ckpt, the DPO run's (LoRA adapters on the SFT model).
    run = str(tmp_path / "lightning_logs")
    out = main_here(
        "predict", "--ckpt_path", run, "--data.prompts_file", str(prompts), *sampling, *writer, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"--ckpt_path {run}: {ckpt}" in out.stderr
    assert "LoRA" not in out.stderr and "started from" not in out.stderr  # predict trains nothing
    (text,) = samples(out.stdout)
    (record,) = read_jsonl(tmp_path / "out.jsonl")
    assert text == "user: Say river.\nassistant: " + record["completion"]  # the chat and its reply, no template
    model, tokenizer, name = load_chat_model(ckpt)
    assert name == "chat" and "<|end|>" in tokenizer.special_tokens
    command = [sys.executable, "-m", "gpt.serve.chat", str(ckpt), "--temperature", "0", "--max_new_tokens", "8"]
    talk = subprocess.run(
        command,
        input="Say river.\nSay stone.\n/reset\n/quit\nnever read\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert talk.returncode == 0, talk.stderr[-3000:]
    assert talk.stdout.count("assistant: ") == 2 and "(a new conversation)" in talk.stdout


def test_chat_keeps_the_history_within_the_context(pretrained, tmp_path):
    from gpt.data.templates import template
    from gpt.model.generation import SamplingSettings
    from gpt.serve.chat import Chat, run

    sft, _ = records(tmp_path)
    chat = ["--data.instructions.template", "chat", "--model.init_from", str(pretrained)]
    assert fit(tmp_path, "--data.instructions.path", str(sft), *chat).returncode == 0
    model, tokenizer, name = load_chat_model(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt")
    chat = Chat(model, tokenizer, template(name), SamplingSettings(max_new_tokens=8, temperature=0))
    import io

    out = io.StringIO()
    run(chat, [f"Say {w} please. " * 6 for w in WORDS[:6]], out)
    assert out.getvalue().count("assistant: ") == 6
    assert out.getvalue().count("dropped)") == 1  # said once
    assert chat.dropped > 0 and len(chat.prompt_ids(chat.history)) <= model.config.block_size
    out = io.StringIO()
    run(chat, ["Say <|end|> now.", "Say river."], out)  # refused, and the chat goes on
    assert "error: the message holds <|end|>, a token of the chat template" in out.getvalue()
    assert out.getvalue().count("assistant: ") == 2 and chat.history[-2].content == "Say river."


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model.lora", "{r: 0}"], "model.lora.r must be a positive integer"),
        (["--model.lora", "{r: 4}", "--model.arch", "blocks"], "LoRA adapts a GPT's weights; arch 'blocks'"),
        (["--model.lora", "{r: 4}", "--data.instructions.template", "chat"], "LoRA keeps the embeddings frozen"),
        (["--data.instructions.too_long", "refuse", "--model.block_size", "8"], "tokens, longer than the context of 8"),
        (["--model.objective", "dpo"], "preference tuning needs 'chosen' and 'rejected' replies"),
    ],
)
def test_fine_tuning_mistakes_are_one_error_line(pretrained, tmp_path, extra, message):
    sft, _ = records(tmp_path)
    args = ["--data.instructions.path", str(sft), "--model.init_from", str(pretrained), *extra]
    assert_clean_error(fit(tmp_path, *args), message)


def test_a_bad_instruction_file_names_the_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"instruction": "x", "input": "", "output": "y"}) + "\n{oops\n")
    result = fit(tmp_path, "--data.instructions.path", "bad.jsonl", "--data.tokenizer.kind", "tiktoken")
    assert_clean_error(result, "bad.jsonl:2: not JSON")


def test_adapters_need_their_base(pretrained, tmp_path):
    sft, _ = records(tmp_path)
    base = tmp_path / "base.ckpt"
    base.write_bytes(pretrained.read_bytes())
    lora = ["--model.lora", "{r: 4}", "--data.instructions.template", "alpaca", "--data.instructions.path", str(sft)]
    assert fit(tmp_path, "--model.init_from", str(base), *lora).returncode == 0
    ckpt = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"
    idx = torch.randint(0, 300, (1, 10))
    merged = load_model(ckpt)[0]
    assert torch.isfinite(merged(idx)).all()
    base.unlink()
    with pytest.raises(FileNotFoundError, match="holds LoRA adapters for the base model .*base.ckpt', which does not"):
        load_model(ckpt)


@pytest.mark.parametrize("template_name", ["chat", "alpaca"])
def test_the_export_chats_in_transformers_with_the_same_ids(pretrained, tmp_path, template_name):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gpt.data.templates import Message, template
    from gpt.interop.hf import export_checkpoint
    from gpt.model.generation import generate

    sft, _ = records(tmp_path)
    tuned = ["--data.instructions.template", template_name, "--model.init_from", str(pretrained)]
    assert fit(tmp_path, "--data.instructions.path", str(sft), *tuned).returncode == 0
    ckpt = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"
    export_checkpoint(str(ckpt), str(tmp_path / "hf"))
    hf_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    messages = [{"role": "user", "content": "Say stone."}]
    if template_name == "chat":  # a turn before: the whole conversation renders alike
        messages = [{"role": "user", "content": "Say river."}, {"role": "assistant", "content": "river!"}, *messages]
    hf_ids = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    model, tokenizer, name = load_chat_model(ckpt)
    chat = template(name)
    ours = tokenizer.encode(chat.prompt([Message(**m) for m in messages]), allowed_special=set(chat.special_tokens))
    assert hf_ids == ours
    n = min(20, model.config.block_size - len(ours))
    new = hf_model.generate(torch.tensor([hf_ids]), max_new_tokens=n, do_sample=False)[0, len(ours) :].tolist()
    mine = generate(model, torch.tensor([ours]), n, temperature=0)[0, len(ours) :].tolist()
    stop = tokenizer.special_tokens[chat.stop_token]
    assert n >= 5 and new == mine[: len(new)] and (len(new) == n or new[-1] == stop)  # it stops at the end of turn
