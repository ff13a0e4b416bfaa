"""Benchmarks behind ``ctvl bench``."""
