"""Test isolation shared by every test module."""
from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _restore_logging():
    """Undo logging configuration a test installs (``monai.bundle run`` reads the bundle's logging.conf).

    ``logging.conf`` attaches a ``StreamHandler`` to the root logger bound to the ``sys.stderr`` of that
    moment, which under pytest is a capture stream closed after the test; a later test that logs would
    then print "--- Logging error ---" into its own stderr. Each test starts from the logging state it found.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    loggers = {name: (list(lg.handlers), lg.level, lg.propagate, lg.disabled)
               for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger):
            continue
        if name in loggers:
            lg.handlers[:] = loggers[name][0]
            lg.setLevel(loggers[name][1])
            lg.propagate, lg.disabled = loggers[name][2], loggers[name][3]
        else:
            lg.handlers[:] = []
