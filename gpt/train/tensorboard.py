"""What a training run shows in TensorBoard besides Lightning's scalars: one chart of
training and validation loss, the HPARAMS table, a text sample, attention maps and the
token embeddings at every validation. main.py adds these to every fit that has a
TensorBoard logger; the README's "Watch it train" says what each card shows.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.strategies import FSDPStrategy
from torch.utils.tensorboard.summary import hparams

from gpt.data.finetuning import InstructionSet
from gpt.eval.visualize import MAX_PROMPT_TOKENS, attention_image, attention_maps, describe_tokens, token_label
from gpt.files import write_text
from gpt.model.generation import SamplingSettings, complete_batch, start_ids

# A line Shakespeare readers know, for the attention maps: the same text at every validation.
ATTENTION_PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?"
PROJECTOR_TOKENS = 4096  # embeddings shown in the projector: all of a char or BPE vocabulary
SAMPLE = dict(temperature=0.8, stop_at_eot=False)  # the text sample's settings besides its length

# TensorBoard's Custom Scalars tab: charts that draw several tags on one set of axes.
LAYOUT = {
    "loss": {
        "training and validation loss": ["Multiline", ["train/loss", "val/loss"]],
    },
    "optimisation": {
        "learning rate": ["Multiline", ["train/lr"]],
        "gradient norm before clipping": ["Multiline", ["train/grad_norm"]],
    },
    "speed": {
        "tokens per second": ["Multiline", ["train/tokens_per_sec"]],
        "ms per step": ["Multiline", ["train/ms_per_step"]],
        "model FLOP utilisation": ["Multiline", ["train/mfu"]],
    },
}
# Preference tuning (model.objective dpo): how far the chosen replies pull ahead of the rejected.
DPO_LAYOUT = {
    "preference": {
        "reward margin (chosen - rejected)": ["Multiline", ["train/reward_margin", "val/reward_margin"]],
        "log-probability of the replies": ["Multiline", ["val/logp_chosen", "val/logp_rejected"]],
        "pairs ranked right": ["Multiline", ["train/reward_accuracy", "val/reward_accuracy"]],
    }
}
# Reinforcement learning (model.objective grpo): the rollouts' rewards, the held-out accuracy, how
# far the policy has moved from the reference and from the policy that sampled.
GRPO_LAYOUT = {
    "reinforcement learning": {
        "reward (train: the rollouts, val: held out, greedy)": ["Multiline", ["train/reward", "val/reward"]],
        "held-out accuracy": ["Multiline", ["val/accuracy"]],
        "reward spread within a group, and groups that teach nothing": [
            "Multiline",
            ["train/reward_std", "train/frac_reward_zero_std"],
        ],
        "KL to the reference": ["Multiline", ["train/kl"]],
        "tokens clipped": ["Multiline", ["train/clip_fraction"]],
        "completion length": ["Multiline", ["train/completion_tokens", "val/completion_tokens"]],
    }
}
ANSWERS = 3  # held-out instructions answered at every validation of a fine-tuning run
ANSWER_TOKENS = 100
HPARAM_METRICS = ("val/loss", "val/best_loss")  # the last and the best validation loss, per run
GRPO_METRICS = ("val/accuracy", "val/reward")  # GRPO validates with no loss
PREDICT_ONLY = ("data.prompt", "data.prompts_file", "data.num_samples", "data.tokenizer_from", "data.data_dir")


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger without the `epoch` value Lightning adds to every step's
    metrics: a run of windows over Tiny Shakespeare never finishes an epoch, so it drew a
    flat card at 0 (train/tokens says how far a run has read)."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:  # about to open this run's event file
            wait_for_a_later_second(Path(self.log_dir))
        return super().experiment


def wait_for_a_later_second(log_dir: Path) -> None:
    """TensorBoard reads a run folder's event files in name order, and a name starts with the
    second its file was opened (events.out.tfevents.SECONDS.host.pid...). A run resumed within
    the second its first part opened its file could be named before it, and its steps shown
    under the old ones: wait (at most a second) until the new name sorts last."""
    seconds = [p.name.split(".")[3] for p in log_dir.glob("events.out.tfevents.*")]
    newest = max((int(s) for s in seconds if s.isdigit()), default=0)
    if newest >= int(time.time()):
        time.sleep(min(1.0, newest + 1 - time.time()))


def flat_settings(pl_module: L.LightningModule, trainer: L.Trainer, data: dict[str, Any]) -> dict[str, Any]:
    """A run's settings as HPARAMS shows them (numbers, strings, booleans): the model as
    built (a preset's values spelled out), its training settings, the data's (as the
    command line and config gave them) and the trainer's that change what is learned."""
    settings: dict[str, Any] = {f"model.{k}": v for k, v in pl_module.hparams.items() if not isinstance(v, dict)}
    settings |= {f"model.{k}": v for k, v in asdict(pl_module.config).items()}  # with the preset's values
    settings |= {f"model.grpo.{k}": v for k, v in (pl_module.hparams.get("grpo") or {}).items()}
    settings |= {f"data.{k}": v for k, v in data.items() if not k.startswith("tokenizer")}
    tokenizer = getattr(trainer.datamodule, "tokenizer_config", None)  # as used: unset is {kind: char}
    settings |= {f"data.tokenizer.{k}": v for k, v in (asdict(tokenizer) if tokenizer else {}).items()}
    settings |= {
        "trainer.max_steps": trainer.max_steps,
        "trainer.precision": str(trainer.precision),
        "trainer.accumulate_grad_batches": trainer.accumulate_grad_batches,
        "trainer.gradient_clip_val": trainer.gradient_clip_val,
        "trainer.devices": trainer.world_size,
    }
    shown = {k: v for k, v in sorted(settings.items()) if k not in PREDICT_ONLY and not k.startswith("model._")}
    return {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in shown.items()}


class TensorBoardPictures(Callback):
    """At the start of a new run: the custom scalars layout and the HPARAMS entry. At every
    validation of fit: a text sample, the attention maps of every layer for a fixed prompt,
    and the token embeddings for the projector. Rank 0 only, TensorBoard only; not under FSDP,
    where no rank holds the whole model to sample from."""

    def __init__(self, data_settings: dict[str, Any] | None = None, prompt: str = ATTENTION_PROMPT):
        self.data_settings = data_settings or {}  # flat: {"batch_size": 16, "tokenizer.kind": "char", ...}
        self.prompt = prompt
        self._described = False

    def writer(self, trainer: L.Trainer) -> Any:
        logger = trainer.logger
        if trainer.is_global_zero and isinstance(logger, TensorBoardLogger):
            return logger.experiment
        return None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = self.writer(trainer)
        if writer is None or trainer.ckpt_path is not None:  # a resumed run wrote these at its start
            return
        extra = DPO_LAYOUT if getattr(pl_module, "dpo", False) else {}
        writer.add_custom_scalars(LAYOUT | extra | (GRPO_LAYOUT if getattr(pl_module, "grpo", None) else {}))
        settings = flat_settings(pl_module, trainer, self.data_settings)
        metrics = GRPO_METRICS if getattr(pl_module, "grpo", None) else HPARAM_METRICS
        for summary in hparams(settings, dict.fromkeys(metrics, math.nan)):  # the metrics' names only
            writer.file_writer.add_summary(summary)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = self.writer(trainer)
        if writer is None or trainer.sanity_checking or trainer.state.fn != "fit" or pl_module.tokenizer is None:
            return
        if isinstance(trainer.strategy, FSDPStrategy):  # sharded weights: rank 0 alone cannot run the model
            return
        # Drawn at the x of this validation's val/loss: Lightning counts the logger's steps
        # from 0, so the validation after N steps sits at N - 1.
        step = trainer.global_step - 1
        self.log_sample(writer, pl_module, step)
        self.log_answers(writer, trainer, pl_module, step)
        self.log_completions(writer, pl_module, step)
        self.log_attention(writer, trainer, pl_module, step)
        self.log_embeddings(writer, pl_module, step)

    def log_sample(self, writer: Any, pl_module: L.LightningModule, step: int) -> None:
        """A sample with what made it: watch the text take shape from one validation to the next."""
        tokens = pl_module.hparams.val_sample_tokens
        if not tokens or pl_module.masked:
            return
        settings = SamplingSettings(max_new_tokens=tokens, seed=pl_module.sampling.seed, **SAMPLE)
        generator = torch.Generator(device=pl_module.device).manual_seed(settings.seed)
        (result,) = complete_batch(pl_module.model, pl_module.tokenizer, [None], settings, generator)
        shown = start_ids(pl_module.tokenizer, None)[1]
        about = (
            f"after {step + 1} steps · prompt {shown!r} (none given: the text starts after it) · "
            f"temperature {settings.temperature}, {tokens} tokens, seed {settings.seed}"
        )
        # TensorBoard renders text as Markdown: four spaces make a verbatim block.
        body = "    " + result.text.lstrip("\n").replace("\n", "\n    ")
        writer.add_text("val/sample", f"{about}\n\n{body}", step)

    def log_answers(self, writer: Any, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        """Fine-tuning: a few held-out instructions, the reply the data holds, and the model's
        (greedy): watch it learn to follow them."""
        data = trainer.datamodule
        if not isinstance(getattr(data, "finetuning", None), InstructionSet):
            return
        template = data.template
        records = data.finetuning.held_out(data.val_fraction, data.seed, ANSWERS)
        settings = SamplingSettings(max_new_tokens=ANSWER_TOKENS, temperature=0.0)
        parts = []
        for record in records:
            prompt = template.prompt(list(record.messages[:-1] if record.chosen is None else record.messages))
            special = set(template.special_tokens)
            args = (pl_module.model, pl_module.tokenizer, [prompt], settings)
            (result,) = complete_batch(*args, allowed_special=special, end_token=template.stop_token)
            reference = record.chosen if record.chosen is not None else record.messages[-1].content
            parts.append(
                f"**{record.messages[-2 if record.chosen is None else -1].content}**\n\n"
                f"the data: {reference}\n\nthe model: {result.text}"
            )
        writer.add_text("val/answers", f"after {step + 1} steps, greedy\n\n---\n\n" + "\n\n---\n\n".join(parts), step)

    def log_completions(self, writer: Any, pl_module: L.LightningModule, step: int) -> None:
        """GRPO: a few held-out problems with the greedy completion and its reward, and the group
        of the latest rollouts' first problem, each with its reward and advantage."""
        state = getattr(pl_module, "rl", None)
        if state is None or not state.shown:
            return
        shown, group = state.shown, state.group
        text = f"after {step + 1} steps: held-out problems, greedy\n\n" + table(
            ["problem", "completion", "reward"], [(cell(q), cell(c), f"{r:g}") for q, c, r in shown]
        )
        if group:
            rows = [(cell(q), cell(c), f"{r:g}", f"{a:+.2f}") for q, c, r, a in group]
            text += "\n\nthe latest rollouts' first group, sampled\n\n"
            text += table(["problem", "completion", "reward", "advantage"], rows)
        writer.add_text("val/completions", text, step)
        state.shown = []  # the next validation shows its own

    def log_attention(self, writer: Any, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        ids = self.prompt_ids(trainer, pl_module)
        maps = attention_maps(pl_module.model, torch.tensor([ids], device=pl_module.device))
        if maps is None:
            return  # the bigram model has no attention
        for layer, heads in enumerate(maps):
            writer.add_image(f"attention/layer_{layer}", attention_image(heads), step)
        if not self._described:  # once a run (and once more after a resume): the prompt does not change
            about = (
                "Each image: one layer, its heads left to right. Row i is token i of the prompt, column j "
                "token j; the brighter, the more of token j goes into token i. Tokens: "
            )
            writer.add_text("attention/prompt", about + describe_tokens(pl_module.tokenizer, ids), step)
            self._described = True

    def prompt_ids(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[int]:
        """The attention prompt's ids; for a vocabulary that cannot spell it, the start of the
        validation text."""
        limit = min(MAX_PROMPT_TOKENS, pl_module.config.block_size)
        try:
            return pl_module.tokenizer.encode(self.prompt)[:limit]
        except ValueError:
            val = getattr(trainer.datamodule, "val_ids", None)
            first = val[0] if isinstance(val, list) else val
            if isinstance(first, dict):  # GRPO: a problem
                return pl_module.tokenizer.encode(first[trainer.datamodule.finetuning.settings.question])[:limit]
            first = first[0].ids if isinstance(first, list) else first  # fine-tuning: an example (or pair)
            return [int(i) for i in first[:limit]]

    def log_embeddings(self, writer: Any, pl_module: L.LightningModule, step: int) -> None:
        """The token embeddings for TensorBoard's projector, replaced at every validation:
        PCA or t-SNE of them shows which tokens the model treats alike (vowels, digits, capitals)."""
        table = next((m.weight for name, m in pl_module.model.named_modules() if name.endswith("wte")), None)
        if table is None:
            return
        n = min(PROJECTOR_TOKENS, pl_module.config.vocab_size)  # a padded table's extra rows are no tokens
        folder = Path(writer.log_dir)
        tensors = io.StringIO()
        np.savetxt(tensors, table[:n].detach().float().cpu().numpy(), delimiter="\t", fmt="%.5g")
        write_text(folder / "projector" / "tensors.tsv", tensors.getvalue())
        labels = [token_label(pl_module.tokenizer, i) for i in range(n)]
        write_text(folder / "projector" / "metadata.tsv", "\n".join(labels) + "\n")
        config = (
            "embeddings {\n"
            f'  tensor_name: "token embeddings (wte) after {step + 1} steps"\n'
            '  tensor_path: "projector/tensors.tsv"\n'
            '  metadata_path: "projector/metadata.tsv"\n'
            "}\n"
        )
        write_text(folder / "projector_config.pbtxt", config)


def cell(text: str) -> str:
    """Text in a Markdown table's cell, as Python writes it (newlines seen), its | escaped."""
    return repr(text).replace("|", "\\|")


def table(header: list[str], rows: list[tuple[str, ...]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
