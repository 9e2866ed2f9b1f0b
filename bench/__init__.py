"""Benchmarks of batch-trigger against bare baselines: `make bench` (python -m bench)."""
