"""Checkpoints (the one place one is opened) and Hugging Face in and out: weights, configs
and tokenizer files that `transformers` reads."""
