"""What LitGPT does for GRPO (model.objective grpo): rollouts, rewards, the update, validation.

A training batch is a list of problems (gpt/data/problems.py). For each, G completions are
sampled from the policy through the batched KV-cached decoder (gpt/model/batching.py: a
problem's G requests share one prefill), each scored by the reward, and the rewards turned into
advantages within each group; the loss is gpt/model/grpo.py's. The rollouts are kept for
model.grpo.updates steps (the data module gives the same batch that many times in a row) and,
while kept, in the checkpoint: a run killed between two of those steps resumes exactly.

Each completion's seed is a function of the run's seed, the step and the problem's place in
the batch of every rank together (gpt/model/grpo.py: GRPOSettings.seed), so a resumed run
samples what an uninterrupted one does, and two DDP ranks of B problems sample what one
process of 2B does: each rank samples the groups of its own problems.

Validation asks each held-out problem once, greedily, through the evaluation's prompts and
sampling (gpt/eval/sampling.py), and logs the fraction right (val/accuracy) and the mean reward.
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from gpt.eval.checkers import checker
from gpt.eval.sampling import encode_prompts, end_ids, sample
from gpt.eval.task import EvalSettings
from gpt.model.batching import Request, decode
from gpt.model.dpo import token_logprobs
from gpt.model.grpo import group_advantages, grpo_loss
from gpt.model.masking import IGNORE_INDEX
from gpt.train.finetune import reference_logits
from gpt.train.runtime import gather_from_ranks

log = logging.getLogger(__name__)  # shown on rank 0 (gpt/train/cli.py)

SHOWN = 4  # held-out problems whose completions TensorBoard shows at each validation


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the code within if it runs longer than `seconds` (SIGALRM: in the
    main thread of a POSIX process; elsewhere no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"took longer than {seconds:g} s (data.problems.reward_timeout)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Reward:
    """A reward function named module:function, called as reward(completion, problem). One that
    raises, returns other than a finite number, or runs past `timeout` seconds stops the run with
    an error that names it (errors "raise"), or scores 0 and is counted (errors "zero")."""

    def __init__(self, name: str, errors: str = "raise", timeout: float = 10.0):
        self.name, self.errors, self.timeout = name, errors, timeout
        self.function = checker(name)
        self.failures = 0

    def __call__(self, completion: str, problem: dict[str, Any]) -> float:
        try:
            with time_limit(self.timeout):
                value = self.function(completion, problem)
            if isinstance(value, numbers.Real) and math.isfinite(value):
                return float(value)
            why = f"returned {value!r} ({type(value).__name__}), not a finite number"
        except Exception as e:  # the reward is the user's code: any failure is its own
            why = f"raised {type(e).__name__}: {e}"
        if self.errors == "raise":
            raise ValueError(
                f"the reward {self.name} {why}, for the completion {completion[:60]!r}; fix it, or give "
                "data.problems.reward_errors zero to score such completions 0"
            )
        self.failures += 1
        return 0.0


def rewards_of(module: Any) -> tuple[Reward, Reward]:
    """The reward and the check (validation's right or wrong) the data names, made once."""
    if module.rl.rewards is None:
        s = module.trainer.datamodule.finetuning.settings
        reward = Reward(s.reward, s.reward_errors, s.reward_timeout)
        module.rl.rewards = (reward, Reward(s.check, s.reward_errors, s.reward_timeout) if s.check else reward)
    return module.rl.rewards


def prompts_of(module: Any, problems: list[dict[str, Any]]) -> list[list[int]]:
    """Each problem's question as the user's message, through the model's template, as ids."""
    if module.template is None:
        raise ValueError(
            "model.objective grpo asks its problems through the chat template the model was fine-tuned with, "
            "and this model has none: fine-tune it on instructions first (docs/finetune.md)"
        )
    question = module.trainer.datamodule.finetuning.settings.question
    s, block_size = module.grpo, module.config.block_size
    texts = [p[question] for p in problems]
    prompts, cut = encode_prompts(module.tokenizer, texts, module.template, "grpo", block_size, s.max_completion_tokens)
    if cut and not module.rl.said_cut:  # once a run: the evaluation cuts them so too
        module.rl.said_cut = True
        log.warning(
            f"warning: {cut} of {len(texts)} problems are longer than the context leaves beside "
            f"max_completion_tokens {s.max_completion_tokens}: their questions lose their start"
        )
    return prompts


@dataclass
class Rollouts:
    """A batch of rollouts, as the updates on it read them: prompt + completion as inputs x and
    targets y (the completion's tokens scored, IGNORE_INDEX elsewhere), the attention mask, one
    advantage a completion, the log-probabilities of the policy that sampled them (with one
    update: None, the policy's own) and of the reference, their rewards and lengths for the
    logs; and `uses`, the updates taken on it."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    advantages: torch.Tensor
    old_logp: torch.Tensor | None
    ref_logp: torch.Tensor | None
    logs: dict[str, torch.Tensor]  # how the sampling went, logged at every update on them
    uses: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class GRPOState:
    """What a GRPO run keeps between steps (LitGPT.rl): the rollouts while updates on them remain
    (in the checkpoint), the reward functions, the prompt and completion tokens of the last
    update (for tokens/s), and for TensorBoard the latest group and a few held-out completions."""

    rollouts: Rollouts | None = None
    rewards: tuple[Reward, Reward] | None = None
    tokens: torch.Tensor | int = 0
    group: list[tuple[str, str, float, float]] = field(default_factory=list)  # problem, completion, reward, advantage
    shown: list[tuple[str, str, float]] = field(default_factory=list)  # problem, completion, reward
    said_cut: bool = False  # that prompts were cut to the context, said once


def pad(sequences: list[list[int]], starts: list[int], device: torch.device) -> tuple[torch.Tensor, ...]:
    """(x, y, attention mask) of prompt + completion sequences, padded on the right; y scores
    each sequence's tokens from `starts` (its completion) on."""
    T = max(len(s) for s in sequences) - 1
    x = torch.zeros(len(sequences), T, dtype=torch.long)
    y = torch.full((len(sequences), T), IGNORE_INDEX, dtype=torch.long)
    for row, (s, start) in enumerate(zip(sequences, starts)):
        ids = torch.tensor(s)
        x[row, : len(s) - 1] = ids[:-1]
        y[row, start - 1 : len(s) - 1] = ids[start:]
    lengths = torch.tensor([len(s) - 1 for s in sequences])
    return x.to(device), y.to(device), (torch.arange(T)[None, :] < lengths[:, None]).to(device)


def rollout(module: Any, problems: list[dict[str, Any]]) -> Rollouts:
    """Sample each problem's group, score it, and keep what the updates need; log how it went."""
    s, trainer = module.grpo, module.trainer
    G, B, world, rank = s.group_size, len(problems), trainer.world_size, trainer.global_rank
    prompts = prompts_of(module, problems)
    ends = end_ids(module.tokenizer, module.template)
    first = module.global_step * B * world  # this step's problems, all ranks together, before these
    seeds = [s.seed + (first + i * world + rank) * G + j for i in range(B) for j in range(G)]
    requests = [
        Request(prompts[k // G], s.max_completion_tokens, s.temperature, end_ids=ends, seed=seed)
        for k, seed in enumerate(seeds)
    ]
    training = module.model.training
    completions = decode(module.model, module.tokenizer, requests, slots=len(requests))
    module.model.train(training)  # the decoder puts it in eval mode
    reward, _ = rewards_of(module)
    failures = reward.failures
    rewards = torch.tensor([reward(c.text, problems[k // G]) for k, c in enumerate(completions)]).view(B, G)
    advantages = group_advantages(rewards, s.scale_rewards).flatten().to(module.device)
    sequences = [r.ids + c.ids for r, c in zip(requests, completions)]
    x, y, mask = pad(sequences, [len(r.ids) for r in requests], module.device)
    old_logp = None
    with torch.no_grad():
        if s.updates > 1:  # the sampling policy: as the decoder ran it, without dropout
            module.model.eval()
            old_logp = token_logprobs(module.model(x, attention_mask=mask), y)
            module.model.train(training)
        ref_logp = token_logprobs(reference_logits(module, x, mask), y)  # with beta 0 too: train/kl shows the drift
    lengths = torch.tensor([len(c.ids) for c in completions], dtype=torch.float)
    logs = {
        "train/reward": rewards.mean(),
        "train/reward_std": rewards.std(dim=1).mean(),  # within a group: the signal there is to learn from
        "train/frac_reward_zero_std": (rewards.std(dim=1) == 0).float().mean(),  # groups that teach nothing
        "train/completion_tokens": lengths.mean(),
        "train/completions_cut": torch.tensor([c.finish == "length" for c in completions]).float().mean(),
        **({"train/reward_errors": torch.tensor(float(reward.failures - failures))} if reward.errors == "zero" else {}),
    }
    question = problems[0][module.trainer.datamodule.finetuning.settings.question]
    module.rl.group = [
        (question, c.text, float(r), float(a)) for c, r, a in zip(completions, rewards[0], advantages[:G])
    ]
    return Rollouts(x, y, mask, advantages, old_logp, ref_logp, logs)


def grpo_step(module: Any, batch: list[dict[str, Any]]) -> torch.Tensor:
    """One update: on new rollouts of this batch's problems, or on the kept ones."""
    s = module.grpo
    if module.rl.rollouts is None:
        module.rl.rollouts = rollout(module, batch)
    r = module.rl.rollouts
    logp = token_logprobs(module.run_model(r.x, r.mask), r.y)
    scored = r.y != IGNORE_INDEX
    strategy, world = module.trainer.strategy, module.trainer.world_size
    mine = scored.sum().float()
    tokens = strategy.reduce(mine.clone(), reduce_op="sum")  # every rank's completion tokens (in place: a copy)
    old_logp = r.old_logp if r.old_logp is not None else logp.detach()
    # dapo's mean over the whole batch's tokens: each rank divides by tokens / world, and DDP
    # averages the ranks' gradients.
    args = (s.epsilon, s.beta, s.loss, s.max_completion_tokens, tokens / world)
    loss, stats = grpo_loss(logp, old_logp, r.ref_logp, r.advantages, scored, *args)
    kl, clipped = strategy.reduce(torch.stack([stats["kl"], stats["clip_fraction"]]) * mine, reduce_op="sum") / tokens
    module.log("train/loss", loss, prog_bar=True)
    module.log_dict({"train/kl": kl, "train/clip_fraction": clipped})  # over every rank's tokens
    module.log_dict(r.logs, sync_dist=True)  # each rank has as many completions: the mean of means is the mean
    module.rl.tokens = r.mask.sum()
    r.uses += 1
    if r.uses == s.updates:
        module.rl.rollouts = None
    return loss


def validate(module: Any, problems: list[dict[str, Any]], prefix: str) -> None:
    """Held-out accuracy: each problem asked once, greedily, and checked."""
    reward, check = rewards_of(module)
    s = module.grpo
    settings = EvalSettings(device=str(module.device), batch_size=len(problems), chat_template=module.template)
    prompts = prompts_of(module, problems)
    completions = [c[0] for c in sample(module.model, module.tokenizer, prompts, settings, s.max_completion_tokens, ())]
    rewards = [reward(c.text, p) for c, p in zip(completions, problems)]
    right = rewards if check is reward else [check(c.text, p) for c, p in zip(completions, problems)]
    n = len(problems)
    values = {
        f"{prefix}/accuracy": sum(right) / n,
        f"{prefix}/reward": sum(rewards) / n,
        f"{prefix}/completion_tokens": sum(len(c.ids) for c in completions) / n,
    }
    module.log_dict(values, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
    shown = module.rl.shown  # the first few of the split: the same problems every time
    if len(shown) < SHOWN:
        question = module.trainer.datamodule.finetuning.settings.question
        shown += [(p[question], c.text, r) for p, c, r in zip(problems, completions, rewards)][: SHOWN - len(shown)]


def save_rollouts(module: Any, checkpoint: dict[str, Any]) -> None:
    """Rollouts kept for more updates go into the checkpoint, every rank's."""
    rollouts = module.rl.rollouts
    states = gather_from_ranks(rollouts.state_dict() if rollouts is not None else None)
    if any(state is not None for state in states):
        checkpoint["grpo_rollouts"] = states


def load_rollouts(module: Any, checkpoint: dict[str, Any]) -> None:
    """This rank's kept rollouts, if the checkpoint has them; and the reference's weights left out
    where this command has no reference (validate or predict a GRPO checkpoint)."""
    states = checkpoint.get("grpo_rollouts")
    state = states[module.global_rank % len(states)] if states else None
    if state is not None:
        state = move_data_to_device(state, module.device)
    module.rl.rollouts = Rollouts(**state) if state is not None else None
    if module.reference is None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("reference.")}
