"""The takhin-ws fan-out benchmark harness: ``python -m benchmarks --help``.

See ``docs/benchmarks.md`` for what it measures and how to read the results.
"""
