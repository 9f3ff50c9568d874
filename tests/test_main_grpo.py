"""GRPO through main.py as a user runs it: a tiny model pretrained and SFT'd here on sums, then
reinforcement learning on them; what TensorBoard shows; exact resume after SIGTERM and SIGKILL
(rollouts kept for a second update included); DDP equal to one process; the mistakes a user
can make, each one error line."""

import re
import signal

import pytest
import torch

from gpt.data.arithmetic import write_task
from helpers import QUIET, ROOT, assert_clean_error, main_here, run_main, scalars

pytestmark = pytest.mark.slow  # fits through the command line, DDP and a killed process among them

TINY = "--model.n_layer 2 --model.n_head 2 --model.n_embd 32 --model.block_size 32 --model.dropout 0.0".split()
BASE = [*QUIET, "--seed_everything", "1", "--model.warmup_steps", "2", "--trainer.log_every_n_steps", "1"]
PROBLEMS = [
    *"--data.problems.path data/train.jsonl --data.problems.held_out data/test.jsonl".split(),
    # A reward that a model this small earns some of: digits written (exact sums are few), and
    # validation's accuracy by exact_match.
    *"--data.problems.reward test_main_grpo:digits --data.problems.check gpt.eval.checkers:exact_match".split(),
]
GRPO = [
    *BASE,
    *PROBLEMS,
    *"--model.objective grpo --model.grpo.group_size 4 --model.grpo.max_completion_tokens 4".split(),
    "--model.weight_decay",
    "0",  # the weights move by the gradient alone
    *"--trainer.max_steps 6 --trainer.val_check_interval 3 --data.batch_size 2 --model.val_sample_tokens 0".split(),
]
TAGS = ("train/loss", "train/reward", "train/kl", "train/clip_fraction", "val/accuracy", "val/reward")
TESTS_ON_PATH = {"PYTHONPATH": str(ROOT / "tests")}  # for helpers.SignalAtStep in a process of its own


def digits(completion, problem):
    return sum(c.isdigit() for c in completion) / 4


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    """A tiny GPT pretrained on one-digit sums and tuned on a few of them as chats: the
    checkpoints of both (GRPO needs the second: its template)."""
    folder = tmp_path_factory.mktemp("sft")
    write_task(folder / "data", digits=1, corpus_lines=400, demonstrations=40, problems=60, test=10)
    steps = "--trainer.max_steps 4 --trainer.val_check_interval 4 --data.batch_size 8 --model.val_sample_tokens 0"
    pretrain = main_here("fit", *TINY, *BASE, *steps.split(), "--data.corpus", "data/corpus.txt", cwd=folder)
    assert pretrain.returncode == 0, pretrain.stderr[-3000:]
    chats = ["--data.instructions.path", "data/sft.jsonl", "--data.instructions.template", "chat"]
    tuned = main_here(
        "fit",
        *BASE,
        *steps.split(),
        "--model.init_from",
        "lightning_logs/version_0/checkpoints/last.ckpt",
        *chats,
        cwd=folder,
    )
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    return folder


def grpo(folder, sft, *extra, run=main_here, env=TESTS_ON_PATH):
    """`main.py fit` of GRPO from the SFT checkpoint, in `folder` (with the problems)."""
    data = folder / "data"
    if not data.exists():
        data.symlink_to(sft / "data")
    start = ["--model.init_from", str(sft / "lightning_logs/version_1/checkpoints/last.ckpt")]
    return run("fit", *GRPO, *start, *extra, cwd=folder, env=env)


def logged(folder) -> dict:
    return {tag: scalars(folder / "lightning_logs/version_0", tag) for tag in TAGS}


@pytest.fixture(scope="module")
def uninterrupted(sft, tmp_path_factory):
    """Runs that nothing stops, with one update on each batch of rollouts and with two."""
    runs = {}
    for updates in (1, 2):
        folder = tmp_path_factory.mktemp(f"updates{updates}")
        result = grpo(folder, sft, "--model.grpo.updates", str(updates))
        assert result.returncode == 0, result.stderr[-3000:]
        runs[updates] = folder
    return runs


def test_grpo_learns_from_rewards_and_shows_it(uninterrupted):
    run = uninterrupted[1] / "lightning_logs/version_0"
    values = {tag: [v for _, v in scalars(run, tag)] for tag in (*TAGS, "train/frac_reward_zero_std")}
    assert len(values["train/reward"]) == 6 and [s for s, _ in scalars(run, "val/accuracy")] == [2, 5]
    assert all(0 <= v <= 1 for v in values["train/reward"] + values["val/accuracy"])
    assert values["train/clip_fraction"] == [0.0] * 6  # one update a batch: pi is pi_old, nothing to clip
    assert all(v >= 0 for v in values["train/kl"]) and values["train/kl"][0] == 0.0  # starts at the reference
    clipped = [v for _, v in scalars(uninterrupted[2] / "lightning_logs/version_0", "train/clip_fraction")]
    assert clipped[0::2] == [0.0] * 3  # the first of two updates is on-policy; the second may clip
    checkpoint = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["grpo"]["group_size"] == 4 and checkpoint["template"] == "chat"
    assert any(p.name.startswith("step3-acc") for p in (run / "checkpoints").iterdir())  # the best: by accuracy
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    section = (ROOT / "docs/grpo.md").read_text().split("## Watching it learn")[1].split("\n## ")[0]
    named = set(re.findall(r"`([a-z_]+/[a-z_]+)`", section)) - {"train/reward_errors"}  # that one with zero
    assert named <= set(events.Tags()["scalars"]) | {t.removesuffix("/text_summary") for t in events.Tags()["tensors"]}
    text = events.Tensors("val/completions/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert text.count("\n| '") == 4 + 4  # four held-out problems, and the four completions of one group
    assert "| reward | advantage |" in text
    start = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    from tensorboard.plugins.hparams import plugin_data_pb2

    settings = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert settings["model.grpo.group_size"].number_value == 4 and settings["model.objective"].string_value == "grpo"
    # A GRPO checkpoint validates and predicts without its reference (nothing else reads it).
    validated = main_here("validate", "--ckpt_path", str(run / "checkpoints/last.ckpt"), *PROBLEMS, cwd=run.parents[1])
    assert validated.returncode == 0 and "val/accuracy" in validated.stdout, validated.stderr[-3000:]
    sampling = "--model.sampling.temperature 0 --model.sampling.max_new_tokens 4 --data.prompt 1+2".split()
    predicted = main_here("predict", "--ckpt_path", str(run / "checkpoints/last.ckpt"), *sampling, cwd=run.parents[1])
    assert predicted.returncode == 0 and predicted.stdout.startswith("1+2"), predicted.stderr[-3000:]


@pytest.mark.parametrize("updates, stop, saved", [(1, {"step": 3}, 4), (2, {"step": 4, "signum": 9}, 3)])
def test_a_stopped_or_killed_grpo_run_resumes_to_the_same_numbers(sft, uninterrupted, tmp_path, updates, stop, saved):
    """SIGTERM: saved after the step under way. SIGKILL as step 5 begins: the checkpoint of the
    validation after step 3 remains, taken between the two updates on one batch of rollouts
    (kept in it), and steps 4 and 5 are trained again."""
    signal_at = ["--trainer.callbacks+=helpers.SignalAtStep"]
    signal_at += [a for k, v in stop.items() for a in (f"--trainer.callbacks.{k}", str(v))]
    killed = "signum" in stop
    extra = ["--model.grpo.updates", str(updates)]
    result = grpo(tmp_path, sft, *extra, *signal_at, run=run_main if killed else main_here, env=TESTS_ON_PATH)
    assert result.returncode == (-signal.SIGKILL if killed else 143), result.stderr[-3000:]
    last = torch.load(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert last["global_step"] == saved
    assert ("grpo_rollouts" in last) == (updates == 2)  # the rollouts of step 3, for the update of step 4
    resumed = grpo(tmp_path, sft, *extra, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming with" not in resumed.stderr  # the same settings, parsed or read back, are no change
    assert logged(tmp_path) == logged(uninterrupted[updates])  # every value, to the bit


def test_two_ddp_ranks_learn_what_one_process_does(sft, uninterrupted, tmp_path):
    """Each rank samples the groups of its own problem (1 of the 2 a step); the ranks' gradients
    averaged are the whole batch's: the same model as one process of 2 problems a step."""
    ddp = "--trainer.strategy ddp --trainer.devices 2 --trainer.accelerator cpu --data.batch_size 1".split()
    result = grpo(tmp_path, sft, *ddp, "--model.grpo.loss", "dapo", run=run_main)
    assert result.returncode == 0, result.stderr[-3000:]
    one = tmp_path / "one"
    one.mkdir()
    assert grpo(one, sft, "--model.grpo.loss", "dapo").returncode == 0
    weights = [
        torch.load(f / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True) for f in (tmp_path, one)
    ]
    for key, value in weights[1]["state_dict"].items():
        assert torch.allclose(weights[0]["state_dict"][key], value, atol=1e-5), key
    changed = weights[1]["state_dict"]["model.transformer.h.0.mlp.c_fc.weight"]
    assert not torch.equal(changed, weights[1]["state_dict"]["reference.transformer.h.0.mlp.c_fc.weight"])  # it learned
    for tag in ("val/accuracy", "train/reward", "train/kl", "train/clip_fraction"):
        mine, theirs = (
            scalars(tmp_path / "lightning_logs/version_0", tag),
            scalars(one / "lightning_logs/version_0", tag),
        )
        assert [s for s, _ in mine] == [s for s, _ in theirs]
        assert [v for _, v in mine] == pytest.approx([v for _, v in theirs], abs=1e-5), tag


def test_with_lora_the_reference_is_the_model_with_its_adapters_off(sft, tmp_path):
    result = grpo(tmp_path, sft, "--model.lora", "{r: 4, alpha: 8, dropout: 0.0}", "--model.learning_rate", "1e-2")
    assert result.returncode == 0, result.stderr[-3000:]
    kl = [v for _, v in scalars(tmp_path / "lightning_logs/version_0", "train/kl")]
    assert kl[0] == 0.0 and kl[-1] > 0  # adapters start at zero: the policy is the reference, then moves
    state = torch.load(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert state and all("lora_" in k for k in state)  # the adapters alone: no copy of the model as reference


def answers_yes(completion, problem):
    return "yes"


def test_a_failing_reward_with_reward_errors_zero_scores_zero_and_the_run_goes_on(sft, tmp_path):
    zero = ["--data.problems.reward", "test_main_grpo:answers_yes", "--data.problems.reward_errors", "zero"]
    result = grpo(tmp_path, sft, *zero, "--trainer.max_steps", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "lightning_logs/version_0"
    assert scalars(run, "train/reward_errors") == [(0, 8.0), (1, 8.0)]  # 2 problems x 4 completions a step
    assert [v for _, v in scalars(run, "train/reward")] == [0.0, 0.0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data.problems.reward", "nowhere:reward"], "checker 'nowhere:reward' cannot be found (No module named"),
        (["--data.problems.reward", "gpt.eval.checkers:nothing"], "has no attribute 'nothing'"),
        (["--data.problems.reward", "exact_match"], "a checker is named module:function"),
        (["--data.problems.reward", "test_main_grpo:answers_yes"], "returned 'yes' (str), not a finite number"),
        (["--model.grpo.group_size", "1"], "group_size must be at least 2"),
        (["--data.problems.path", "data/sft.jsonl"], "the problem has no text in 'question'"),
        (["--data.problems.held_out", "nope.jsonl"], "problems file 'nope.jsonl' does not exist"),
        (["--model.objective", "causal"], "data.problems are for model.objective grpo"),
        (["--trainer.accumulate_grad_batches", "2"], "gradient accumulation (2 micro-batches) would split it"),
    ],
)
def test_grpo_mistakes_are_one_error_line(sft, tmp_path, extra, message):
    assert_clean_error(grpo(tmp_path, sft, *extra, env=TESTS_ON_PATH), message)


def test_grpo_needs_a_model_tuned_with_a_template(sft, tmp_path):
    (tmp_path / "data").symlink_to(sft / "data")
    pretrained = ["--model.init_from", str(sft / "lightning_logs/version_0/checkpoints/last.ckpt")]
    assert_clean_error(main_here("fit", *GRPO, *pretrained, cwd=tmp_path), "was not fine-tuned on instructions")
    result = main_here("fit", *GRPO, *TINY, cwd=tmp_path)  # no model to start from at all
    assert_clean_error(result, "reinforcement learning tunes a chat model of ours")
    dropped = {i + k for i, a in enumerate(GRPO) if a.startswith("--data.problems") for k in (0, 1)}
    no_problems = [a for i, a in enumerate(GRPO) if i not in dropped]
    result = main_here(
        "fit", *no_problems, "--model.init_from", str(sft / "lightning_logs"), cwd=tmp_path
    )  # its newest
    assert_clean_error(result, "model.objective grpo learns from problems a reward checks: give data.problems")
