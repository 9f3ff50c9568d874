"""BenchmarkEval (gpt/train/eval_callbacks.py): python -m gpt.eval's tasks scored after every
validation of a fit and logged beside val/loss, with the numbers the command gives on the same
weights; a tokenizer that cannot encode a task stops the fit before it trains."""

import pytest
import torch

from gpt.eval.subject import load_subject
from gpt.eval.task import EvalSettings
from gpt.eval.tasks import TASKS
from helpers import LINES_TEXT, assert_clean_error, eval_data, fit_args, main_here, scalars

pytestmark = pytest.mark.slow  # each test trains through the command line

GPT2_TOKENS = ["--data.tokenizer.kind", "tiktoken", "--data.tokenizer.encoding", "gpt2"]


def callback(tasks: str, limit: int = 6) -> list[str]:
    return [
        "--trainer.callbacks+=gpt.train.eval_callbacks.BenchmarkEval",
        f"--trainer.callbacks.tasks={tasks}",
        f"--trainer.callbacks.limit={limit}",
        f"--trainer.callbacks.data_dir={eval_data()}",
    ]


def test_scores_are_logged_after_every_validation_as_the_command_scores_them(tmp_path):
    (tmp_path / "corpus.txt").write_text(LINES_TEXT)
    args = fit_args(tmp_path / "corpus.txt", tmp_path / "data", steps=12)
    result = main_here(*args, *GPT2_TOKENS, *callback("piqa,lambada"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "version_0"
    steps = [s for s, _ in scalars(run, "val/loss")]
    for tag in ("val/piqa_acc", "val/piqa_acc_norm", "val/lambada_acc", "val/lambada_perplexity"):
        assert [s for s, _ in scalars(run, tag)] == steps == [5, 11]  # beside val/loss, not in the sanity check
    # The last validation saw the weights that last.ckpt holds: python -m gpt.eval's numbers.
    subject = load_subject(run / "checkpoints" / "last.ckpt")
    for name, metric in (("piqa", "acc"), ("piqa", "acc_norm"), ("lambada", "perplexity")):
        task = TASKS[name]
        with torch.no_grad():
            want = task.evaluate(subject.model, subject.tokenizer, task.load(eval_data(), 6), EvalSettings())
        assert scalars(run, f"val/{name}_{metric}")[-1][1] == pytest.approx(want.metrics[metric].value, rel=1e-5)


def test_a_tokenizer_that_cannot_encode_a_task_stops_the_fit_before_training(tmp_path):
    (tmp_path / "corpus.txt").write_text(LINES_TEXT)  # characters of a play: MMLU needs more
    args = fit_args(tmp_path / "corpus.txt", tmp_path / "data", steps=2)
    result = main_here(*args, *callback("mmlu_anatomy", limit=2), cwd=tmp_path)
    assert_clean_error(result, "mmlu_anatomy: ")
    assert "cannot be encoded by the model's tokenizer" in result.stderr
    assert not list(tmp_path.glob("lightning_logs/**/*.ckpt"))
