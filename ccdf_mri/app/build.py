"""Build the reconstruction from a bundle config: what ``ccdf-mri recon`` runs.

The CLI reads the bundle's ``configs/inference.json`` with MONAI's ``ConfigParser``, applies
its options as overrides of the config ids (``--t0 0.1`` sets ``t0``, as ``python -m
monai.bundle run ... --t0 0.1`` does) and instantiates ``reconstructor``: the same parts
(``network``, ``inferer``, ``preprocessing``, ``postprocessing``, ...) the bundle's evaluator
runs, so both give the same outputs. Only the parts ``reconstructor`` refers to are built:
the CLI never builds ``evaluator`` or ``handlers`` and so never imports pytorch-ignite.
"""

from __future__ import annotations

import os

from typing import Any, Dict, Mapping, Optional, Union

from ccdf_mri.app.bundle import bundle_dir

# Options of `ccdf-mri recon` and the config ids they set.
RECON_KEYS = (
    "mask",
    "acceleration",
    "center_fraction",
    "initializer",
    "t0",
    "num_steps",
    "sampler",
    "num_samples",
    "maps",
    "formats",
    "seed",
    "batch_size",
    "target_key",
)


def read_config(bundle: Union[str, os.PathLike, None] = None, overrides: Optional[Mapping[str, Any]] = None):
    """The bundle's inference config as a ``monai.bundle.ConfigParser`` with ``overrides`` applied.

    ``bundle_root`` is set to the bundle folder; ``overrides`` keys are config ids
    (``"t0"``, ``"inferer#dc#lam"``, ...).
    """
    from monai.bundle import ConfigParser

    folder = bundle_dir(bundle)
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    # (metadata.json is not read: the reconstruction needs none of it, and MONAI warns about the
    #  schema's optional_packages_version key on every read)
    parser["bundle_root"] = str(folder)
    for key, value in (overrides or {}).items():
        if value is not None:
            try:
                parser[key] = value
            except (KeyError, IndexError, TypeError):
                raise ValueError(
                    f"{folder / 'configs' / 'inference.json'}: config id '{key}': expected an existing id or a new "
                    f"key of an existing section (e.g. 'inferer#dc#lam'), found no such place"
                ) from None
    return parser


def config_defaults(bundle: Union[str, os.PathLike, None] = None) -> Dict[str, Any]:
    """The values of :data:`RECON_KEYS` in the bundle's inference config (the CLI's defaults)."""
    parser = read_config(bundle)
    config = parser.get()
    missing = [key for key in RECON_KEYS if key not in config]
    if missing:
        raise ValueError(f"{bundle_dir(bundle)}/configs/inference.json: expected keys {missing}, found none")
    return {key: config[key] for key in RECON_KEYS}


def from_bundle(bundle: Union[str, os.PathLike, None] = None, overrides: Optional[Mapping[str, Any]] = None):
    """The bundle's ``reconstructor`` (:class:`ccdf_mri.app.reconstructor.Reconstructor`) with ``overrides``.

    Raises:
        FileNotFoundError / ValueError: no bundle, or a part cannot be built (the message names it).
    """
    return build_part("reconstructor", bundle, overrides)


def build_part(config_id: str, bundle: Union[str, os.PathLike, None] = None, overrides: Optional[Mapping[str, Any]] = None):
    """One part of the bundle's inference config, instantiated with ``overrides`` (e.g.
    ``build_part("initializer_fn", overrides={"initializer": "cg_sense"})``: the CG-SENSE start
    with the bundle's own options, as a run with ``--initializer cg_sense`` builds it).

    Raises:
        FileNotFoundError / ValueError: no bundle, or the part cannot be built (the message names it).
    """
    parser = read_config(bundle, overrides)
    try:
        return parser.get_parsed_content(config_id, instantiate=True)
    except (RuntimeError, KeyError) as error:  # MONAI wraps component errors; surface the cause
        cause: BaseException = error
        while isinstance(cause, RuntimeError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, (ValueError, FileNotFoundError, OSError)):
            raise cause from None
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        detail = "" if cause is error else f" ({type(cause).__name__}: {cause})"
        raise ValueError(f"{bundle_dir(bundle) / 'configs' / 'inference.json'}: cannot build '{config_id}': {first}{detail}") from error
