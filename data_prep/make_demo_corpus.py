"""Thin entry point: `python -m data_prep.make_demo_corpus` runs :mod:`ccdf_mri.data_prep.make_demo_corpus` (also `ccdf-mri prepare make_demo_corpus`)."""

import sys

from ccdf_mri.data_prep.make_demo_corpus import main

if __name__ == "__main__":
    sys.exit(main())
