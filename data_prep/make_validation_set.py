"""Thin entry point: `python -m data_prep.make_validation_set` runs :mod:`ccdf_mri.data_prep.make_validation_set`."""

import sys

from ccdf_mri.data_prep.make_validation_set import main

if __name__ == "__main__":
    sys.exit(main())
