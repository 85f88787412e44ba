"""Input discovery and output names that cannot collide.

:func:`find_inputs` expands the files and folders a user names into the list of fastMRI
files to process; :func:`output_names` gives each an output name and refuses, before any
work, two inputs that would write the same outputs.

Rules (the CLI documents them to the user):

- A folder contributes every file whose name ends in ``.h5`` in any letter case (``.H5``),
  **recursively by default** (``recursive=False``: only the folder itself), sorted by path.
  Skipped: ``<name>.maps.h5`` coil-map sidecars of ``prepare_fastmri``, hidden files and
  folders (names starting with ``.``, e.g. the temporaries of :func:`ccdf_mri.io.atomic_path`),
  and anything inside the ``exclude`` folders (pass the output folder, so a rerun does not
  take its own ``<name>.h5`` submission files for inputs). Symbolic links to folders are not
  followed (no loops); links to files are.
- A file named explicitly is kept whatever its name; a path that does not exist is kept
  too, so that the run reports it as failed.
- The same file reached twice (named twice, or a file and its folder) is listed once.
- Nothing found at all is a :class:`NoInputsError` naming every place looked at.
- Output name = input file name without ``.h5`` (fastMRI submissions must keep the input
  file name). Two inputs with the same name (``dirA/x.h5`` and ``dirB/x.h5``), names equal
  up to letter case (one file on case-insensitive file systems), a name ``<n>_std`` next to
  a name ``<n>`` (the standard-deviation map of ``n`` is ``<n>_std.nii.gz``) and the
  reserved name ``mean`` (the last row of ``metrics.csv``) raise :class:`NameCollisionError`
  naming the files, unless ``by_relative_path=True`` asks for names made of the path below
  the input folder (``dirA/sub/x.h5`` under ``dirA`` -> ``sub__x``; with several input
  folders, below their common folder: ``dirA__sub__x``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Union

PathLike = Union[str, os.PathLike]
SIDECAR_SUFFIX = ".maps.h5"
H5_SUFFIX = ".h5"
RESERVED_NAMES = ("mean",)
STD_SUFFIX = "_std"
PATH_SEPARATOR = "__"

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())


class NoInputsError(FileNotFoundError):
    """No input file was found; the message names every place looked at (the CLI exits 2)."""


class NameCollisionError(ValueError):
    """Two inputs would write the same outputs; the message names both files."""


def is_h5_name(name: str) -> bool:
    """True for ``*.h5`` names in any letter case, False for ``*.maps.h5`` sidecars."""
    lower = name.lower()
    return lower.endswith(H5_SUFFIX) and not lower.endswith(SIDECAR_SUFFIX)


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def _scan_folder(folder: Path, recursive: bool, exclude: Sequence[Path]) -> List[Path]:
    found: List[Path] = []
    for current, subfolders, names in os.walk(folder, followlinks=False):
        current_path = Path(current)
        if _inside(current_path.resolve(), exclude):
            subfolders[:] = []
            continue
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")) if recursive else []
        found.extend(current_path / n for n in names if not n.startswith(".") and is_h5_name(n))
    return sorted(p for p in found if p.is_file())


def find_inputs(
    inputs: Union[PathLike, Sequence[PathLike]],
    recursive: bool = True,
    exclude: Iterable[PathLike] = (),
) -> List[Path]:
    """Expand files and folders into the list of input files, in order (see the module rules).

    Args:
        inputs: one path or a sequence of files and folders.
        recursive: search folders' subfolders too (default True).
        exclude: folders whose content is never an input (e.g. the output folder).

    Returns:
        the files: each folder's ``.h5`` files sorted by path, in the order of ``inputs``;
        explicit files (existing or not) where they were named; no path twice.

    Raises:
        NoInputsError: the list would be empty; the message names each folder (and whether
            its subfolders were searched) and each file that was given.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    excluded = [Path(p).resolve() for p in exclude]
    files: List[Path] = []
    seen = set()
    looked: List[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = _scan_folder(path, recursive, excluded)
            where = "and its subfolders" if recursive else "(not its subfolders)"
            looked.append(f"{path} {where}: {len(found)} .h5 file(s)")
            if not found:
                logger.warning("%s: no .h5 files found %s", path, where)
        else:
            found = [path]
        for file in found:
            key = file.resolve() if file.exists() else file.absolute()
            if key not in seen:
                seen.add(key)
                files.append(file)
    if not files:
        places = "; ".join(looked) if looked else "no input paths were given"
        hint = "" if recursive or not looked else " (subfolders were not searched)"
        raise NoInputsError(
            f"no input files: expected fastMRI .h5 files (any letter case, not *.maps.h5), found none; "
            f"looked in {places}{hint}"
        )
    return files


def volume_name(path: PathLike) -> str:
    """Output stem of an input file: its name without ``.h5`` (any letter case)."""
    name = Path(path).name
    return name[: -len(H5_SUFFIX)] if name.lower().endswith(H5_SUFFIX) else Path(path).stem


def _relative_name(path: Path, roots: Sequence[Path]) -> str:
    resolved = path.absolute()
    for root in roots:
        root = root.absolute()
        if root in resolved.parents:
            parts = resolved.relative_to(root).parts
            return PATH_SEPARATOR.join((*parts[:-1], volume_name(parts[-1])))
    return volume_name(path)


def output_names(
    files: Sequence[PathLike],
    roots: Optional[Sequence[PathLike]] = None,
    by_relative_path: bool = False,
) -> Dict[Path, str]:
    """An output name per input file, checked for collisions before any work.

    Args:
        files: the inputs (:func:`find_inputs`).
        roots: the folders the user named (the ``inputs`` of :func:`find_inputs`); used by
            ``by_relative_path`` only.
        by_relative_path: name a file found under ``roots`` by its path below them, folders
            joined with ``__``: with one root ``root/a/b/x.h5`` -> ``a__b__x``; with several,
            the path below their common folder (``dirA/x.h5`` and ``dirB/x.h5`` -> ``dirA__x``,
            ``dirB__x``); files named directly (outside the roots), and with one root files
            directly inside it, keep their plain name.

    Returns:
        ``{Path(file): name}`` in input order.

    Raises:
        NameCollisionError: two files share a name (compared case-insensitively), one name
            is another's ``<name>_std``, or a name is reserved (``mean``); the message names
            the files and suggests the fix.
    """
    folders = [Path(r) for r in (roots or []) if Path(r).is_dir()]
    if len(folders) > 1:  # several folders: names below their common folder (dirA/x.h5 -> dirA__x)
        folders = [Path(os.path.commonpath([str(folder.absolute()) for folder in folders]))]
    names: Dict[Path, str] = {}
    for file in files:
        path = Path(file)
        names[path] = _relative_name(path, folders) if by_relative_path else volume_name(path)
    owner: Dict[str, Path] = {}
    problems: List[str] = []
    for path, name in names.items():
        key = name.casefold()
        if key in RESERVED_NAMES:
            problems.append(f"{path}: output name '{name}' is reserved (the mean row of metrics.csv)")
        elif key in owner:
            problems.append(f"{owner[key]} and {path} both map to output name '{name}'")
        else:
            owner[key] = path
    for key, path in owner.items():
        if key + STD_SUFFIX in owner:
            problems.append(
                f"{owner[key + STD_SUFFIX]} maps to '{names[owner[key + STD_SUFFIX]]}', the name of "
                f"the standard-deviation map of {path}"
            )
    if problems:
        fix = "rename or move one of them" if by_relative_path else "rename one, or name outputs by their relative paths"
        raise NameCollisionError("output names collide: " + "; ".join(problems) + f" ({fix})")
    return names
