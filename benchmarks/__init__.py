"""Reproducible quality and speed studies of ccdf-mri; results go to ``benchmarks/results/``."""
