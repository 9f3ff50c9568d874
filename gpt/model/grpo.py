"""Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath): learn from attempts that
a program scores, with no learned value model.

For each problem q, the policy samples a group of G completions o_1..o_G and a reward function
scores them r_1..r_G. Each completion's advantage is its reward against its group's:

    A_i = (r_i - mean(r)) / (std(r) + 1e-4)        (Dr. GRPO: r_i - mean(r), no std)

so a completion better than its siblings is made more likely, a worse one less, and a group
whose completions all score alike (all right, all wrong) teaches nothing. Every token t of o_i
shares A_i. The loss is PPO's clipped surrogate with a KL penalty to a frozen reference:

    ratio_t = pi(o_t | q, o_<t) / pi_old(o_t | q, o_<t)
    L_t     = -min(ratio_t A_i, clip(ratio_t, 1 - eps, 1 + eps) A_i) + beta KL_t
    KL_t    = pi_ref / pi - log(pi_ref / pi) - 1        (Schulman's k3: unbiased, never negative)

pi_old is the policy that sampled the completions. On the first update after sampling, pi is
pi_old (ratio 1, nothing clipped); with several updates on one batch of rollouts (mu > 1) the
policy drifts from what sampled them, and the clip stops any token's probability being pushed
further than 1 +- eps of it in one batch. The KL keeps the policy near the reference (the
model before RL), so that it does not trade what it knew for reward.

How the token losses are averaged (`loss`) is a choice the papers argue over:
    grpo     each completion's mean over its tokens, then the mean over completions (Shao et al.)
    dapo     the mean over every completion token of the batch (Yu et al. 2025, DAPO): long
             completions are not diluted, so a long wrong answer costs more than a short one
    dr_grpo  the sum over tokens / (completions x max_completion_tokens) (Liu et al. 2025,
             Dr. GRPO): a constant, with no bias towards any length

Plain torch, no Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

LossType = Literal["grpo", "dapo", "dr_grpo"]
STD_EPS = 1e-4  # TRL's: a group whose rewards barely differ is not blown up


@dataclass(frozen=True)
class GRPOSettings:
    """Reinforcement learning with GRPO (model.objective grpo): how rollouts are sampled and
    how the policy learns from them. Names as in the papers; defaults DeepSeekMath's where it
    gives one.

    Args:
        group_size: G, completions sampled for each problem. Their rewards, against one
            another, are the advantages (DeepSeekMath: 64; TRL: 8).
        temperature: Sampling temperature of the rollouts (1.0: the policy as it is).
        max_completion_tokens: The longest a completion may be; one cut there is learned from
            as it stands.
        updates: mu, optimizer steps on each batch of rollouts (DeepSeekMath: 1). Above 1 the
            later steps learn from completions an older policy sampled: the ratio and its clip
            come into play. Each counts as a step of trainer.max_steps.
        epsilon: eps, the clip range: the ratio pi / pi_old counts within [1 - eps, 1 + eps] (PPO's 0.2).
        beta: beta, the weight of the KL penalty to the reference (DeepSeekMath: 0.04; 0 drops
            it, as DAPO and nanochat do: train/kl still shows it).
        loss: How token losses are averaged: grpo (per completion, then over completions),
            dapo (over all completion tokens), dr_grpo (a constant: completions x
            max_completion_tokens).
        scale_rewards: group: the advantage is divided by the group's standard deviation
            (GRPO); none: not (Dr. GRPO: the division favours problems that are nearly always
            or nearly never solved).
        seed: Completion j of problem p at step s is sampled with seed + (s x problems a step
            + p) x G + j: a run repeats exactly, and a resumed one draws what it would have.
    """

    group_size: int = 8
    temperature: float = 1.0
    max_completion_tokens: int = 256
    updates: int = 1
    epsilon: float = 0.2
    beta: float = 0.04
    loss: LossType = "grpo"
    scale_rewards: Literal["group", "none"] = "group"
    seed: int = 1337

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(
                f"model.grpo.group_size must be at least 2, got {self.group_size}: an advantage is a completion's "
                "reward against the others of its group, and one alone has none to compare with"
            )
        if self.temperature <= 0:
            raise ValueError(
                f"model.grpo.temperature must be > 0 (the group's completions must differ), got {self.temperature}"
            )
        if self.max_completion_tokens < 1 or self.updates < 1:
            got = f"{self.max_completion_tokens} and {self.updates}"
            raise ValueError(f"model.grpo.max_completion_tokens and updates must be >= 1, got {got}")
        if not 0 < self.epsilon < 1 or self.beta < 0:
            raise ValueError(f"model.grpo needs 0 < epsilon < 1 and beta >= 0, got {self.epsilon} and {self.beta}")


def group_advantages(rewards: torch.Tensor, scale: str = "group") -> torch.Tensor:
    """(problems, G) rewards -> advantages: each against its group's mean, divided by the group's
    standard deviation (n - 1, as torch.std and TRL) when scale is "group"."""
    advantages = rewards - rewards.mean(dim=1, keepdim=True)
    if scale == "group":
        advantages = advantages / (rewards.std(dim=1, keepdim=True) + STD_EPS)
    return advantages


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimate of KL(pi || pi_ref) at each sampled token: r - log r - 1 with
    r = pi_ref / pi; unbiased, and never negative."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float = 0.2,
    beta: float = 0.04,
    loss_type: LossType = "grpo",
    max_completion_tokens: int | None = None,
    tokens: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO's loss on completions (rows) and their tokens (columns, `mask` 1 where a token is
    the completion's). logp: log pi of each sampled token (with gradient); old_logp: of the
    policy that sampled them; ref_logp: of the reference (None: no KL); advantages: one a
    row. tokens: dapo's count of completion tokens (default: mask's; under DDP every rank's
    / world size, so that averaging the ranks' gradients gives the whole batch's mean).
    Returns the loss and, detached, the mean KL and the fraction of tokens clipped."""
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    A = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * A, clipped * A)
    kl = kl_k3(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)  # with beta 0: watched only
    per_token = per_token + beta * kl
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    elif loss_type == "dapo":
        loss = (per_token * mask).sum() / (mask.sum() if tokens is None else tokens)
    elif loss_type == "dr_grpo":
        if max_completion_tokens is None:
            raise ValueError("the dr_grpo loss divides by max_completion_tokens: give it")
        loss = (per_token * mask).sum() / (logp.size(0) * max_completion_tokens)
    else:
        raise ValueError(f"unknown GRPO loss {loss_type!r}; choose grpo, dapo or dr_grpo")
    # A token is clipped where the clip took the gradient away: the ratio past the bound the
    # advantage pushes it towards.
    was_clipped = ((ratio < 1 - epsilon) & (A < 0)) | ((ratio > 1 + epsilon) & (A > 0))
    n = mask.sum().clamp(min=1)
    stats = {"kl": ((kl * mask).sum() / n).detach(), "clip_fraction": ((was_clipped * mask).sum() / n).detach()}
    return loss, stats
