"""Helpers shared by the batch commands of ``data_prep/``: error collection and progress.

A batch command reports each bad input (a message naming the file) and goes on with
the rest; at the end it prints a summary and exits non-zero when anything failed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Iterable, List, Tuple

from tqdm.auto import tqdm


@dataclass
class BatchReport:
    """Collects successes and failures of a batch run.

    Attributes:
        quiet: no progress bars and no per-item messages (errors still go to stderr).
        done: names of the items that succeeded.
        errors: ``(item, message)`` of the items that failed.
    """

    quiet: bool = False
    done: List[str] = field(default_factory=list)
    errors: List[Tuple[str, str]] = field(default_factory=list)

    def progress(self, iterable: Iterable, **kwargs) -> Iterable:
        """``tqdm(iterable, **kwargs)``, silent when ``quiet``."""
        return tqdm(iterable, disable=self.quiet, **kwargs)

    def ok(self, item: str) -> None:
        """Record a success."""
        self.done.append(str(item))

    def fail(self, item: str, message: str) -> None:
        """Record a failure and print ``error: <message>`` to stderr at once."""
        self.errors.append((str(item), message))
        tqdm.write(f"error: {message}", file=sys.stderr)

    def info(self, message: str) -> None:
        """Print a message unless quiet."""
        if not self.quiet:
            tqdm.write(message)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, else 1."""
        return 1 if self.errors else 0

    def summary_lines(self, what: str) -> List[str]:
        """Lines of the closing summary: counts, then one line per failure."""
        lines = [f"{what}: {len(self.done)} done, {len(self.errors)} failed"]
        lines += [f"  failed: {message}" for _, message in self.errors]
        return lines
