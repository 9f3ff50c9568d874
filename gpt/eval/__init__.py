"""Measuring a model: benchmarks (python -m gpt.eval: tasks, their scoring), HellaSwag, reports
of size and memory, attention maps."""
