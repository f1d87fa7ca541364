"""The MLflow tracking servers the harness runs, in one place.

* :mod:`.local` - ``mlflow server`` on this host, for the docker tier and benchmarks.
"""

from __future__ import annotations

from harness.tracking.local import LocalTrackingServer

__all__ = ["LocalTrackingServer"]
