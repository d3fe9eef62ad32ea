"""Benchmark harness of taskstore: workloads, floors measured in the same run, and RESULTS.md.

Run ``python -m bench`` (full data set), ``python -m bench --quick`` or ``python -m bench --smoke``.
"""
