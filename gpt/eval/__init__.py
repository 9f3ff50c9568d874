"""Measuring a model: HellaSwag, reports of size and memory, attention maps."""
