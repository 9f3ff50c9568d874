"""Measuring a model: benchmarks (python -m gpt.eval: the tasks in tasks/, their scoring, the
checkers of generated answers, executor.py's sandbox for generated code), HellaSwag, reports
of size and memory, attention maps."""
