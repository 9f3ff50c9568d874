"""main.py predict, run as a user runs it: prompts, sampling settings, streaming, the
JSON-lines writer, fill-mask, and the errors a user can cause."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpt.tokenizers import MASK
from helpers import (
    ROOT,
    SPEECHES_TEXT,
    assert_clean_error,
    fit_args,
    main_here,
    predict,
    read_jsonl,
    samples,
    scalars,
    write_jsonl,
)

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout flushed by the code itself


def predict_here(checkpoint: Path, cwd: Path, *extra: str):
    """predict from a checkpoint with no corpus around, in this process."""
    return predict(checkpoint, cwd, "--data.corpus", "missing.txt", *extra)


def test_predict_without_the_corpus(trained, tmp_path):
    _, checkpoint, _, _ = trained
    # A fresh folder, no corpus, no data cache, no config: only the checkpoint.
    settings = "--data.prompt First --model.sampling.max_new_tokens 50 --data.num_samples 2 --model.sampling.seed 3"
    result = predict_here(checkpoint, tmp_path, *settings.split())
    assert result.returncode == 0, result.stderr[-3000:]
    texts = samples(result.stdout)
    assert len(texts) == 2
    assert all(t.startswith("First") and len(t) == 5 + 50 for t in texts)
    assert texts[0] != texts[1]
    assert not (tmp_path / "lightning_logs").exists()  # predict leaves no run folder


def test_the_flags_from_before_the_sampling_group_still_work(trained, tmp_path):
    _, checkpoint, _, _ = trained
    old_flags = "--model.max_new_tokens 20 --model.temperature 0 --model.sample_seed=3"
    old = predict_here(checkpoint, tmp_path, *old_flags.split())
    new_flags = "--model.sampling.max_new_tokens 20 --model.sampling.temperature 0"
    new = predict_here(checkpoint, tmp_path, *new_flags.split())
    assert old.returncode == 0, old.stderr[-3000:]
    assert samples(old.stdout) == samples(new.stdout) and len(samples(old.stdout)[0]) == 1 + 20
    assert "note: --model.temperature is now --model.sampling.temperature; the old name still works" in old.stderr
    assert "note: --model.sample_seed is now --model.sampling.seed" in old.stderr


@pytest.mark.slow  # several processes
def test_predict_same_seed_same_text(trained, tmp_path):
    _, checkpoint, _, _ = trained
    runs = [
        predict_here(checkpoint, tmp_path, *f"--model.sampling.max_new_tokens 30 --model.sampling.seed {s}".split())
        for s in "778"
    ]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-3000:]
    a, b, c = (samples(r.stdout) for r in runs)
    assert a == b
    assert a != c


def test_predict_greedy_is_deterministic_and_escapes_newlines(trained, tmp_path):
    _, checkpoint, _, _ = trained
    args = "--model.sampling.temperature 0 --model.sampling.max_new_tokens 20 --data.prompt All:\\n".split()
    a = predict_here(checkpoint, tmp_path, *args, "--model.sampling.seed", "1")
    b = predict_here(checkpoint, tmp_path, *args)
    assert a.returncode == 0, a.stderr[-3000:]
    assert samples(a.stdout) == samples(b.stdout)
    assert samples(a.stdout)[0].startswith("All:\n")


def test_error_unknown_character_in_prompt(trained, tmp_path):
    _, checkpoint, _, _ = trained
    result = predict_here(checkpoint, tmp_path, "--data.prompt", "Fi#")
    assert_clean_error(result, "character '#' at position 2 is not in the tokenizer's vocabulary")


def test_error_empty_prompt(trained, tmp_path):
    _, checkpoint, _, _ = trained
    result = predict_here(checkpoint, tmp_path, "--data.prompt", "")
    assert_clean_error(result, "the prompt is empty")


def test_bpe_predict_without_the_corpus_takes_any_text(trained_bpe, tmp_path):
    _, checkpoint, _, _ = trained_bpe
    prompt = "Citizen 🙂 naïve"  # characters the corpus never had: bytes are always in the vocabulary
    args = ["--data.prompt", prompt, "--model.sampling.max_new_tokens", "20"]
    runs = [predict_here(checkpoint, tmp_path, *args) for _ in "ab"]
    assert runs[0].returncode == 0, runs[0].stderr[-3000:]
    texts = samples(runs[0].stdout)
    assert len(texts) == 1 and texts[0].startswith(prompt) and len(texts[0]) > len(prompt)
    assert samples(runs[1].stdout) == texts


def test_error_checkpoint_tokenizer_does_not_fit_the_model(trained_bpe, tmp_path):
    _, checkpoint, _, _ = trained_bpe
    ckpt = torch.load(checkpoint, weights_only=True, map_location="cpu")
    ckpt["tokenizer"] = {"kind": "tiktoken", "encoding": "gpt2"}
    torch.save(ckpt, tmp_path / "mixed.ckpt")
    result = predict_here(tmp_path / "mixed.ckpt", tmp_path)
    assert_clean_error(result, "the checkpoint's tokenizer has 50257 tokens but its model has vocab_size 300")


@pytest.mark.slow
def test_gpt2_tokenizer_fit_and_predict(small_corpus, tmp_path):
    gpt2 = "--data.tokenizer.kind tiktoken --data.tokenizer.encoding gpt2 --model.val_sample_tokens 0".split()
    result = main_here(*fit_args(small_corpus, tmp_path / "data", steps=6), *gpt2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = next((tmp_path / "lightning_logs").rglob("last.ckpt"))
    ckpt = torch.load(checkpoint, weights_only=True, map_location="cpu")
    assert ckpt["tokenizer"] == {"kind": "tiktoken", "encoding": "gpt2"}
    assert ckpt["hyper_parameters"]["vocab_size"] == 50257
    out = predict_here(
        checkpoint, tmp_path, "--data.prompt", "Every effort moves you", "--model.sampling.max_new_tokens", "5"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert samples(out.stdout)[0].startswith("Every effort moves you")


def test_prompts_from_a_file_with_samples_in_order_and_saved_as_json_lines(trained, tmp_path):
    _, checkpoint, _, _ = trained
    (tmp_path / "prompts.jsonl").write_text('"First"\n{"prompt": "All:\\nSp"}\n\n"Be"\n', encoding="utf-8")
    writer = [
        "--trainer.callbacks+=gpt.train.callbacks.JSONLinesWriter",
        "--trainer.callbacks.path",
        "out/samples.jsonl",
    ]
    settings = "--data.prompts_file prompts.jsonl --data.num_samples 2 --model.sampling.max_new_tokens 25"
    result = predict_here(checkpoint, tmp_path, *settings.split(), "--model.sampling.stop_at_eot", "false", *writer)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_jsonl(tmp_path / "out" / "samples.jsonl")
    prompts = ["First", "First", "All:\nSp", "All:\nSp", "Be", "Be"]
    assert [(r["index"], r["sample"], r["prompt"]) for r in records] == [
        (i // 2, i % 2, p) for i, p in enumerate(prompts)
    ]
    assert all(len(r["completion"]) == 25 and r["finish"] == "length" for r in records)
    assert records[0]["completion"] != records[1]["completion"]  # two samples, not one twice
    assert records[0]["settings"] == dict(
        max_new_tokens=25,
        temperature=0.8,
        top_k=None,
        top_p=None,
        stop=[],
        stop_at_eot=False,
        seed=1337,
        kv_cache=True,
        stream=True,
        int8=False,
    )
    assert samples(result.stdout) == [r["prompt"] + r["completion"] for r in records]  # what was printed


@pytest.mark.slow  # several processes
def test_batched_and_streamed_greedy_predict_agree(trained, tmp_path):
    _, checkpoint, _, _ = trained
    (tmp_path / "prompts.txt").write_text("First\nAll:\\nSpeak\nFirst C\nAll\n", encoding="utf-8")
    args = "--data.prompts_file prompts.txt --model.sampling.max_new_tokens 30 --model.sampling.temperature 0".split()
    streamed = predict_here(checkpoint, tmp_path, *args)
    batched = predict_here(checkpoint, tmp_path, *args, "--model.sampling.stream", "false", "--data.batch_size", "4")
    uncached = predict_here(checkpoint, tmp_path, *args, "--model.sampling.kv_cache", "false")
    assert streamed.returncode == batched.returncode == uncached.returncode == 0, batched.stderr[-3000:]
    texts = samples(streamed.stdout)
    prompts = ["First", "All:\nSpeak", "First C", "All"]
    assert [t[: len(p)] for t, p in zip(texts, prompts)] == prompts
    assert samples(batched.stdout) == texts == samples(uncached.stdout)


def test_stop_strings_and_no_prompt(trained, tmp_path):
    _, checkpoint, _, _ = trained
    writer = ["--trainer.callbacks+=gpt.train.callbacks.JSONLinesWriter", "--trainer.callbacks.path", "s.jsonl"]
    settings = "--model.sampling.max_new_tokens 200 --data.num_samples 3".split()
    stop = ["--model.sampling.stop", '[":", "zz"]']
    result = main_here("predict", "--ckpt_path", str(checkpoint), *settings, *stop, *writer, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_jsonl(tmp_path / "s.jsonl")
    assert all(r["prompt"] is None and ":" not in r["completion"] for r in records)
    assert [r["finish"] for r in records] == ["stop"] * 3  # every speaker's name ends in ":"
    assert all(s.startswith("\n") for s in samples(result.stdout))  # no prompt: text starts after a newline


@pytest.mark.slow
def test_predict_streams_while_it_writes(trained, tmp_path):
    _, checkpoint, _, _ = trained
    settings = "--data.prompt First --model.sampling.max_new_tokens 20000 --model.sampling.temperature 1.0"
    command = [sys.executable, str(ROOT / "main.py"), "predict", "--ckpt_path", str(checkpoint), *settings.split()]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV)
    try:
        first = process.stdout.read(200)  # arrives long before the 20,000th token
        assert first.startswith(b"First") and len(first) == 200
        assert process.poll() is None  # still writing
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_predict_and_keeps_the_previous_output_file(trained, tmp_path, signum):
    _, checkpoint, _, _ = trained
    (tmp_path / "s.jsonl").write_text('{"kept": true}\n')
    writer = ["--trainer.callbacks+=gpt.train.callbacks.JSONLinesWriter", "--trainer.callbacks.path", "s.jsonl"]
    settings = "--data.prompt First --model.sampling.max_new_tokens 20000".split()
    command = [sys.executable, str(ROOT / "main.py"), "predict", "--ckpt_path", str(checkpoint), *settings, *writer]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        assert process.stdout.read(100).startswith(b"First")  # sampling has begun
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signum
    assert f"{signal.Signals(signum).name}: predict stopped" in stderr.decode() and b"Traceback" not in stderr
    assert (tmp_path / "s.jsonl").read_text() == '{"kept": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl"]  # no temporary file, no run folder


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model.sampling.top_p", "1.5"], "error: top_p must be in (0, 1] (or None for no limit), got 1.5"),
        (["--model.sampling.temperature", "-1"], "error: temperature must be >= 0 (0 means greedy), got -1.0"),
        (["--model.sampling.top_k", "0"], "error: top_k must be >= 1 (or None for no limit), got 0"),
        (["--model.sampling.max_new_tokens", "-5"], "error: max_new_tokens must be >= 0, got -5"),
        (["--data.prompts_file", "nope.txt"], "error: prompts file 'nope.txt' does not exist"),
    ],
)
def test_error_bad_predict_settings(trained, tmp_path, extra, message):
    _, checkpoint, _, _ = trained
    assert_clean_error(predict_here(checkpoint, tmp_path, *extra), message)


@pytest.mark.slow  # several processes
def test_cli_masked_fit_then_fill_mask(tmp_path):
    speeches = tmp_path / "speeches.txt"
    speeches.write_text(SPEECHES_TEXT)
    settings = (
        "--data.mode paragraphs --model.objective masked --model.n_layer 1 --model.n_head 2 --model.n_embd 32 "
        "--model.block_size 32 --data.batch_size 4 --trainer.max_steps 4 --trainer.enable_progress_bar false "
        "--trainer.log_every_n_steps 2"
    )
    fit = main_here("fit", "--data.corpus", str(speeches), *settings.split(), cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    checkpoint = next((tmp_path / "lightning_logs").rglob("last.ckpt"))
    # The masked model's own TensorBoard tags (see the README's table): accuracy on hidden tokens.
    assert [step for step, _ in scalars(checkpoint.parents[1], "val/acc")] == [3]
    assert all(0 <= acc <= 1 for _, acc in scalars(checkpoint.parents[1], "train/acc"))
    writer = ["--trainer.callbacks+=gpt.train.callbacks.JSONLinesWriter", "--trainer.callbacks.path", "fill.jsonl"]
    prompt = ["--data.prompt", "Spe<|mask|>k, <|mask|>peak."]
    out = main_here(
        "predict", "--ckpt_path", str(checkpoint), *prompt, "--model.sampling.top_k", "3", *writer, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (record,) = read_jsonl(tmp_path / "fill.jsonl")
    assert len(record["candidates"]) == 2 and all(len(c) == 3 for c in record["candidates"])
    assert all(sum(p for _, p in c) <= 1.0001 for c in record["candidates"])
    filled = record["completion"]
    assert len(filled) == len("Speak, speak.") and filled[:3] == "Spe" and MASK not in filled
    assert f"{MASK} 1: " in out.stdout and f"{MASK} 2: " in out.stdout
    no_mask = main_here("predict", "--ckpt_path", str(checkpoint), "--data.prompt", "Speak", cwd=tmp_path)
    assert_clean_error(no_mask, "error: the prompt has no <|mask|> to fill")


@pytest.mark.slow
def test_every_command_that_takes_a_checkpoint_takes_a_run_folder(trained, tmp_path, capsys):
    """predict, the export, HellaSwag, the chat and the server: a run folder means its newest
    last.ckpt, named on stderr; the export's files get the mode the umask gives (0644 here)."""
    from gpt.eval import hellaswag
    from gpt.serve import chat
    from gpt.serve.__main__ import main as serve

    run_dir, checkpoint, _, _ = trained
    folder = run_dir.parent  # lightning_logs/: the runs of no config
    said = f"{folder}: {checkpoint}"
    out = predict(folder, tmp_path, "--model.sampling.max_new_tokens", "3")
    assert out.returncode == 0 and f"--ckpt_path {said}" in out.stderr, out.stderr[-3000:]
    export = [sys.executable, "-m", "gpt.interop.hf", str(folder), str(tmp_path / "hf")]
    result = subprocess.run(export, cwd=ROOT, capture_output=True, text=True, preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 0 and said in result.stderr, result.stderr[-3000:]
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "hf").iterdir()} == {0o644}
    item = {"ctx": "All: speak", "endings": ["speak.", "a", "hear me", "All"], "label": 0}
    hellaswag.main([str(folder), "--data", str(write_jsonl(tmp_path / "h.jsonl", [item])), "--device", "cpu"])
    captured = capsys.readouterr()
    assert said in captured.err and "over 1 items" in captured.out
    with pytest.raises(ValueError, match=f"checkpoint '{checkpoint}' was not fine-tuned on instructions"):
        chat.main([str(folder)])
    threads = torch.get_num_threads()  # the server sets one thread for a small model
    with socket.socket() as taken:  # the model is loaded before the port is taken: it fails after
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ValueError, match="cannot listen on"):
            serve([str(folder), "--port", str(taken.getsockname()[1])])
    torch.set_num_threads(threads)
    assert said in capsys.readouterr().err
