"""Thin entry points of the dataset commands; the code lives in :mod:`ccdf_mri.data_prep`."""
