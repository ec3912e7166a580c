"""Reproducible throughput and latency harness for Taskmaster and its peers.

Run ``python -m benchmarks --help``; see benchmarks/README.md. Not part of the
installed distribution and not a test suite.
"""
