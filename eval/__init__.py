"""Evaluation: generate on the held-out split, score entity and relation F1, report and compare.

`python -m eval COMMAND`; `python -m eval --help` lists the commands.
"""
