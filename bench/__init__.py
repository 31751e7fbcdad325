"""Benchmarks for xlabel. Run one with `python -m bench.<name>`; see BENCHMARKS.md."""
