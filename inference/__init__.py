"""Loading a run and decoding with it: the one engine behind eval, extraction and the benchmarks."""
