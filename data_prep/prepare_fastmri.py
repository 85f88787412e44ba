"""Thin entry point: `python -m data_prep.prepare_fastmri` runs :mod:`ccdf_mri.data_prep.prepare_fastmri` (also `ccdf-mri prepare prepare_fastmri`)."""

import sys

from ccdf_mri.data_prep.prepare_fastmri import main

if __name__ == "__main__":
    sys.exit(main())
