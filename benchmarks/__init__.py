"""Benchmarks: run with `make bench`; they print tables and write JSON to benchmarks/results/."""
