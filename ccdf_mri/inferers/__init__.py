"""MONAI inferers of ccdf-mri."""

from ccdf_mri.inferers.ccdf import CCDFInferer

__all__ = ["CCDFInferer"]
