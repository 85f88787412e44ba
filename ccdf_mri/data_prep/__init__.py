"""Dataset-building commands of ccdf-mri (thin command-line fronts over ``ccdf_mri`` library code).

Run them as ``ccdf-mri prepare NAME ...`` or ``python -m ccdf_mri.data_prep.NAME ...``; in a
checkout, ``python -m data_prep.NAME`` runs the same code (see ``data_prep/README.md``).
"""
