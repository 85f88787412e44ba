"""Dataset-building commands of ccdf-mri (thin command-line fronts over ``ccdf_mri`` library code).

Run them as modules from the repository root, e.g. ``python -m data_prep.make_demo_corpus --help``,
or as scripts (``python data_prep/make_demo_corpus.py --help``); see ``data_prep/README.md``.
"""
