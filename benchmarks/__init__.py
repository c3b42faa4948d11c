"""Benchmarks of smoke: scripts, not tests. Run them with ``uv run --group bench python benchmarks/run.py``."""
