"""Benchmark tasks, one a module, each with a module-level TASK that follows gpt/eval/task.py's
protocol: gsm8k and humaneval (generation, scored by gpt/eval/checkers.py)."""
