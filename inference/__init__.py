"""Load a trained run, decode, extract, serve."""
