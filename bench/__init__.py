"""GPU benchmarks: the seed's scripts vs our pipeline, on the same GPU, data and model shape.

`python -m bench COMMAND` (one module per command; `python -m bench --help`); see bench/README.md.
"""
