"""The model and generation: plain torch, the lesson.

config (GPTConfig, presets) -> layers (attention, KV cache, RoPE, MLPs, norms, the block) ->
models (bigram -> one head -> heads -> blocks -> GPT) -> generation (sampling with the KV
cache); masking (BERT's masked objective), optim (decay groups, Muon, the schedule).
"""
