"""gpt/model/grpo.py, gpt/train/grpo.py's rewards, gpt/data/arithmetic.py and the sampler's
repeats: GRPO's loss and gradient as the paper writes them, worked by hand on two problems of
four completions each; rewards that fail; the task's held-out set."""

import json
import math
import re
import time

import pytest
import torch

from gpt.data.arithmetic import write_task
from gpt.data.datasets import ResumableSampler
from gpt.eval.checkers import exact_match
from gpt.model.grpo import GRPOSettings, group_advantages, grpo_loss, kl_k3
from gpt.train.grpo import Reward

BETA, EPS = 0.04, 0.2
# Two problems, G = 4: the first's completions all right (no signal), the second's one in four.
REWARDS = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
LENGTHS = [3, 1, 2, 3, 2, 3, 1, 2]  # each completion's tokens (of at most 3)


def completions(seed: int = 0):
    """log pi, log pi_ref of each completion token (0 past its end) and the mask."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[1.0] * n + [0.0] * (3 - n) for n in LENGTHS])
    logp = -torch.rand(8, 3, generator=g) * 2 * mask
    ref = -torch.rand(8, 3, generator=g) * 2 * mask
    return logp, ref, mask


def test_advantages_are_rewards_against_their_group():
    A = group_advantages(REWARDS)
    assert A[0].tolist() == [0.0] * 4  # all alike: nothing to learn from this problem
    # mean 1/4, sample standard deviation sqrt((3/4)^2 + 3 (1/4)^2) / 3) = 1/2
    assert A[1].tolist() == pytest.approx([0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001])
    assert group_advantages(REWARDS, "none")[1].tolist() == [0.75, -0.25, -0.25, -0.25]  # Dr. GRPO


def test_k3_is_never_negative_and_its_mean_under_the_policy_is_the_kl():
    pi = torch.tensor([0.5, 0.3, 0.2])
    ref = torch.tensor([0.2, 0.2, 0.6])
    k3 = kl_k3(pi.log(), ref.log())
    assert (k3 >= 0).all() and kl_k3(pi.log(), pi.log()).eq(0).all()
    kl = (pi * (pi / ref).log()).sum()
    assert (pi * k3).sum().item() == pytest.approx(kl.item(), abs=1e-6)  # unbiased: E_pi[k3] = KL(pi || ref)


def test_the_loss_and_its_gradient_on_one_update_are_the_papers_by_hand():
    """One update after sampling: pi_old = pi (ratio 1, nothing clipped). DeepSeekMath's eq. 3:
    L = 1/G sum_i 1/|o_i| sum_t [-A_i + beta (r - log r - 1)], r = pi_ref / pi; so
    dL/dlog pi_(i,t) = 1/(2G) 1/|o_i| [-A_i + beta (1 - r)] over 2 problems."""
    logp, ref, mask = completions()
    logp.requires_grad_(True)
    A = group_advantages(REWARDS).flatten()
    loss, stats = grpo_loss(logp, logp.detach(), ref, A, mask, EPS, BETA, "grpo")
    loss.backward()
    expected, grad = 0.0, torch.zeros(8, 3)
    for i, n in enumerate(LENGTHS):
        for t in range(n):
            r = math.exp(ref[i, t].item() - logp[i, t].item())
            expected += (-A[i].item() + BETA * (r - math.log(r) - 1)) / n / 8
            grad[i, t] = (-A[i].item() + BETA * (1 - r)) / n / 8
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(logp.grad, grad, atol=1e-7)
    assert stats["clip_fraction"].item() == 0.0
    diffs = [ref[i, t].item() - logp[i, t].item() for i, n in enumerate(LENGTHS) for t in range(n)]
    k3 = [math.exp(d) - d - 1 for d in diffs]
    assert stats["kl"].item() == pytest.approx(sum(k3) / sum(LENGTHS), rel=1e-6)
    assert logp.grad[:4].abs().max() < BETA  # the all-right problem: only the KL pulls


def test_later_updates_clip_the_ratio_where_the_advantage_pushes_it():
    """With the policy moved from pi_old, a token's surrogate min(ratio A, clip(ratio) A) loses
    its gradient where the ratio is past 1 + eps with A > 0, or below 1 - eps with A < 0."""
    logp, ref, mask = completions()
    shift = torch.tensor([0.5, -0.5, 0.05]).repeat(8, 1) * mask  # ratios e^0.5 = 1.65, e^-0.5 = 0.61, 1.05
    old = logp - shift
    logp.requires_grad_(True)
    A = group_advantages(REWARDS).flatten()
    loss, stats = grpo_loss(logp, old, ref, A, mask, EPS, beta=0.0, loss_type="grpo")
    loss.backward()
    expected, grad, clipped = 0.0, torch.zeros(8, 3), 0
    for i, n in enumerate(LENGTHS):
        for t in range(n):
            ratio = math.exp(shift[i, t].item())
            a = A[i].item()
            bound = min(max(ratio, 1 - EPS), 1 + EPS)
            expected += -min(ratio * a, bound * a) / n / 8
            cut = (ratio > 1 + EPS and a > 0) or (ratio < 1 - EPS and a < 0)
            grad[i, t] = 0.0 if cut else -a * ratio / n / 8
            clipped += cut
    assert (
        clipped == 3
    )  # problem 2: token 0 of its right completion (A > 0), token 1 of the two wrong ones that have one
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(logp.grad, grad, atol=1e-7)
    assert stats["clip_fraction"].item() == pytest.approx(clipped / sum(LENGTHS))


def test_the_three_normalisations():
    logp, ref, mask = completions()
    A = group_advantages(REWARDS).flatten()
    per_token = -A[:, None] + BETA * kl_k3(logp, ref)
    total = (per_token * mask).sum()
    dapo = grpo_loss(logp, logp, ref, A, mask, EPS, BETA, "dapo")[0]
    assert dapo.item() == pytest.approx((total / sum(LENGTHS)).item(), rel=1e-6)  # every token alike
    dr = grpo_loss(logp, logp, ref, A, mask, EPS, BETA, "dr_grpo", max_completion_tokens=16)[0]
    assert dr.item() == pytest.approx((total / (8 * 16)).item(), rel=1e-6)  # a constant
    halves = []  # two DDP ranks of four completions each, each dividing by half the batch's tokens
    for k in (0, 4):
        rows = slice(k, k + 4)
        args = (logp[rows], logp[rows], ref[rows], A[rows], mask[rows], EPS, BETA, "dapo")
        halves.append(grpo_loss(*args, tokens=sum(LENGTHS) / 2)[0])
    assert (sum(halves) / 2).item() == pytest.approx(dapo.item(), rel=1e-6)  # two ranks' mean: the batch's


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"group_size": 1}, "group_size must be at least 2"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"updates": 0}, "max_completion_tokens and updates must be >= 1"),
        ({"epsilon": 1.5}, "0 < epsilon < 1 and beta >= 0"),
    ],
)
def test_settings_no_run_can_use_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        GRPOSettings(**settings)


def answer_yes(completion, problem):
    return "yes"


def slow(completion, problem):
    time.sleep(5)
    return 1.0


def broken(completion, problem):
    raise KeyError("answer")


def test_eval_checkers_are_rewards_and_a_failing_reward_is_an_error_or_zero():
    reward = Reward("gpt.eval.checkers:exact_match")
    assert reward(" 132 ", {"answer": "132"}) == 1.0 and reward("131", {"answer": "132"}) == 0.0
    assert reward.function is exact_match
    for name, why in [
        ("test_grpo:answer_yes", "returned 'yes' (str), not a finite number"),
        ("test_grpo:broken", "raised KeyError: 'answer'"),
        ("test_grpo:slow", "raised TimeoutError: took longer than 0.2 s"),
    ]:
        with pytest.raises(ValueError, match=re.escape(f"the reward {name} {why}")):
            Reward(name, "raise", timeout=0.2)("x", {})
        zero = Reward(name, "zero", timeout=0.2)
        start = time.perf_counter()
        assert zero("x", {}) == 0.0 and zero("y", {}) == 0.0 and zero.failures == 2
        assert time.perf_counter() - start < 2  # cut at the timeout, not waited for
    with pytest.raises(ValueError, match="cannot be found"):
        Reward("gpt.eval.checkers:nothing")


def test_the_sampler_gives_each_batch_updates_times_and_resumes_inside_them():
    plain = list(ResumableSampler(12, seed=3))
    repeated = ResumableSampler(12, seed=3, repeats=3, batch=4)
    stream = list(repeated)
    assert len(repeated) == 36 and stream == [i for k in range(0, 12, 4) for _ in range(3) for i in plain[k : k + 4]]
    repeated.resume(0, 20)  # 5 batches of 4 done: the second batch's third time is next
    assert list(repeated) == stream[20:]


def test_the_task_holds_its_held_out_sums_out_of_every_other_file(tmp_path):
    folder = write_task(tmp_path / "a", digits=2, corpus_lines=3000, demonstrations=50, problems=500, test=100)
    test = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()]
    assert len(test) == len({p["question"] for p in test}) == 100
    held = {p["question"] for p in test}
    assert all(int(p["answer"]) == sum(map(int, p["question"].split("+"))) for p in test)
    corpus = {line.split("=")[0] for line in (folder / "corpus.txt").read_text().splitlines()}
    train = {json.loads(line)["question"] for line in (folder / "train.jsonl").read_text().splitlines()}
    demos = {json.loads(line)["messages"][0]["content"] for line in (folder / "sft.jsonl").read_text().splitlines()}
    assert len(corpus) > 2000 and not (corpus | train | demos) & held
    again = write_task(tmp_path / "b", digits=2, corpus_lines=10, demonstrations=5, problems=5, test=100)
    assert (again / "test.jsonl").read_text() == (folder / "test.jsonl").read_text()  # fixed by its seed alone
