"""Option checks shared by the CLI, the bundle and the library (cheap imports only)."""

from __future__ import annotations

from typing import Any, Sequence, Tuple, Union

from ccdf_mri.choices import FORMATS


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """Raise ValueError naming the option unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, found {value!r}")


def parse_formats(formats: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """``"nifti,h5"`` or a sequence -> validated tuple of output formats."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    items = [item.strip().lower() for item in items if item.strip()]
    for item in items:
        check_choice("formats", item, FORMATS)
    if not items:
        raise ValueError(f"formats: expected at least one of {FORMATS}, found none")
    return tuple(dict.fromkeys(items))


def default_device(device: Any = None):
    """``device`` as a :class:`torch.device`; ``None``/``"auto"`` -> CUDA when available, else CPU.

    Raises:
        ValueError: an unknown device name, or CUDA asked for where there is none.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected e.g. 'cpu', 'cuda' or 'cuda:1', found {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {str(device)!r} asked for, but CUDA is not available here")
    return device
