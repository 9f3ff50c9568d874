"""Text to batches, plain Python: corpora (files, folders, downloads), documents (.jsonl,
.parquet, the hub) tokenized into shards, windows and examples and their samplers, prompts;
instruction records and templates; problems for reinforcement learning and a task that makes
them (arithmetic)."""
