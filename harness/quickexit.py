"""Let a process that imported the ML stack exit without a last garbage collection of all of it.

A pytest session or an ``mlflow run`` that imported MLflow, pandas, scikit-learn and the kubernetes
client holds millions of objects. As the interpreter shuts down it collects them once more, only to
drop them: 0.8 s of one core per process here (2 cores, 2026-12-07), and both processes sit on the
edit-to-green loop's critical path (the test waits for ``mlflow run`` to exit; the developer waits for
pytest to). :func:`gc.freeze` moves them out of the collector's reach, so the exit takes 0.1 s.

It runs as the last exit handler (registered early; :mod:`atexit` runs handlers in reverse), after
MLflow's flushes, logging's shutdown and pytest's reports: nothing left to do needs a collection.
What it gives up: objects that only a collection could free (those in reference cycles) are not
finalized at exit; files are closed by their owners before then (reports, logs, our writers).
"""

from __future__ import annotations

import atexit
import gc

__all__ = ["skip_final_collection"]

_registered = False


def skip_final_collection() -> None:
    """Register, once per process, the freeze that spares the interpreter's final collection."""
    global _registered  # one registration per process is the point
    if not _registered:
        atexit.register(gc.freeze)
        _registered = True
