"""ccdf-mri: Come-Closer-Diffuse-Faster reconstruction of undersampled multi-coil MRI for MONAI."""

__version__ = "0.3.3"
