"""Direct Preference Optimization (Rafailov et al., 2023): learn from pairs of replies, one
preferred, without a reward model or reinforcement learning.

The policy's log-probability of each reply, against a frozen reference's (the model before
preference tuning), is an implicit reward: r = beta * (log pi(y|x) - log pi_ref(y|x)). The loss
-log sigmoid(r_chosen - r_rejected) raises the chosen reply's reward over the rejected one's;
beta sets how far the policy may move from the reference (0.1 is the paper's usual value).

Plain torch, no Lightning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gpt.model.masking import IGNORE_INDEX


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at each position, 0 where the target is IGNORE_INDEX (not the reply's):
    (B, T, V), (B, T) -> (B, T)."""
    scored = targets != IGNORE_INDEX
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * scored


def sequence_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over each row of log p(target), the reply's tokens only (targets IGNORE_INDEX
    elsewhere): (B, T, V), (B, T) -> (B,)."""
    return token_logprobs(logits, targets).sum(-1)


def dpo_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, chosen rewards, rejected rewards) of a batch of pairs, from the summed
    log-probabilities of each reply under the policy and the reference."""
    chosen_rewards = beta * (chosen - ref_chosen)
    rejected_rewards = beta * (rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return loss, chosen_rewards.detach(), rejected_rewards.detach()
