"""Evaluation: generate on the held-out split, score entity and relation F1, report and compare.

`python -m eval {score,generate,compare,...}`; see eval/__main__.py for the subcommands.
"""
