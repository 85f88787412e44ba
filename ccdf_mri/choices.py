"""The option vocabularies, in one place with no imports (so ``ccdf-mri --help`` needs no torch).

The modules that implement each choice import their tuple from here.
"""

MASK_KINDS = ("equispaced_fraction", "random", "gaussian1d", "poisson2d")
SAMPLERS = ("ddpm", "ddim", "ve")
INITIALIZERS = ("zero_filled", "cg_sense", "l1_wavelet", "unet")
MAP_METHODS = ("acs", "espirit")
FORMATS = ("nifti", "h5", "dicom")
