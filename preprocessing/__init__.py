"""Data stage: build the instruction JSONL from BC5CDR (bc5cdr), validate and split it (prepare).

The task definition every stage shares lives in ``preprocessing.task``.
"""
