"""GPU benchmarks: the seed's scripts vs our pipeline, on the same GPU, data and model shape.

`python -m bench train|eval|recipes|scaling|table`; see bench/README.md.
"""
