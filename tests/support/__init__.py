"""Helpers shared by the tests and the benchmarks: servers to launch and hostile files to send.

The benchmarks import these; nothing here imports the benchmarks.
"""
