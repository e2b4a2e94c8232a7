"""Benchmarks of the operator (against the local cluster) and of the trainer (on this machine's CPU).

``python -m bench`` runs both sections; see bench/README.md for what each figure means.
Speed targets live here and never in timed tests.
"""
