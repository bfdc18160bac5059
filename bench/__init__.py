"""Benchmarks (not part of the installed package): run ``python -m bench`` from the repository root."""
