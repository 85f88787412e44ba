"""Networks of ccdf-mri: the score (epsilon) U-Net, the initializer U-Net, the complex <->
channel adaptor and weight loading. Submodules import MONAI networks; import them directly
(``ccdf_mri.networks.score``, ``.initializer``, ``.complex``, ``.loading``)."""
