"""Where the shipped MONAI bundle is, and copying it out.

The bundle (configs, weights, docs) is ``bundles/ccdf_mri_recon`` in a checkout and ships
inside the package as ``ccdf_mri/_bundle`` (a link in the checkout, a folder in a wheel), so a
``pip install`` works from any directory with no network. ``$CCDF_MRI_BUNDLE`` or ``--bundle``
points at another bundle folder (e.g. one retrained on your data); ``ccdf-mri bundle export
DIR`` copies the shipped one out for ``python -m monai.bundle run``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional, Union

BUNDLE_ENV = "CCDF_MRI_BUNDLE"
PACKAGED = Path(__file__).resolve().parents[1] / "_bundle"


def bundle_dir(path: Union[str, os.PathLike, None] = None) -> Path:
    """The bundle folder: ``path``, else ``$CCDF_MRI_BUNDLE``, else the one shipped in the package.

    Raises:
        FileNotFoundError: the folder has no ``configs/inference.json``; the message says how to
            point at a bundle.
    """
    folder = Path(path or os.environ.get(BUNDLE_ENV) or PACKAGED)
    config = folder / "configs" / "inference.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"{config}: bundle inference config not found (give --bundle DIR or set ${BUNDLE_ENV} to a "
            "folder with configs/inference.json and models/)"
        )
    return folder


def export_bundle(destination: Union[str, os.PathLike], source: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Copy the bundle folder to ``destination`` (which must not exist); returns it."""
    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(f"{destination}: already exists; choose a new folder")
    shutil.copytree(bundle_dir(source).resolve(), destination, symlinks=False)
    return destination
