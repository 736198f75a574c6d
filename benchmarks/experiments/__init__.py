"""Finished A/B experiments, kept as the record of what was measured and how.

Each runs as ``python -m benchmarks.experiments.<name>``; its result and verdict are in the
experiment log of ``benchmarks/README.md``. Their per-item outputs stay local
(``benchmarks/results/<run>/*.jsonl`` are not committed).
"""
