"""Eval tests share ``tiny_run`` and the per-test feature cache from ``tests/conftest.py``."""
