"""Atomic output: write under a temporary name in the target folder, then rename.

A reader (or a rerun that skips finished outputs) therefore sees either no file or a
complete one; an interrupted or failed write leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    The temporary name is ``.<random>.tmp-<name>`` in the same folder, so it keeps the
    extension (``.nii.gz``, ``.h5``) that writers use to choose a format, and the final
    ``os.replace`` stays on one file system. The caller may create a file or a folder at
    the temporary path; an existing ``path`` of the same kind is replaced. On any error the
    temporary file or folder is removed and the error propagates; ``path`` is untouched.

    Args:
        path: the final file or folder. Its parent folder is created when missing.

    Yields:
        the temporary :class:`pathlib.Path` to write to.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{uuid.uuid4().hex[:12]}.tmp-{final.name}"
    try:
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise FileNotFoundError(f"{final}: the writer created nothing at the temporary path {tmp}")
        if tmp.is_dir() and final.is_dir():
            # os.replace cannot replace a non-empty folder: move the old one aside first.
            old = final.parent / f".{uuid.uuid4().hex[:12]}.old-{final.name}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise
