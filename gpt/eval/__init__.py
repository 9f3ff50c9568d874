"""Measuring a model: benchmark tasks (gsm8k and humaneval in tasks/, scored by checkers.py; code
run in executor.py's sandbox), HellaSwag, reports of size and memory, attention maps."""
