"""Thin entry point: `python -m data_prep.images_to_kspace` runs :mod:`ccdf_mri.data_prep.images_to_kspace` (also `ccdf-mri prepare images_to_kspace`)."""

import sys

from ccdf_mri.data_prep.images_to_kspace import main

if __name__ == "__main__":
    sys.exit(main())
