"""Benchmarks: each module runs standalone (`uv run python -m bench.<name>`) and prints a markdown table."""
