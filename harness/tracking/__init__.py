"""Both MLflow tracking servers the harness runs, in one place.

* :mod:`.local` - ``mlflow server`` on this host, for the docker tier and benchmarks;
* :mod:`.incluster` - the server the stack deploys into the cluster for the e2e tier: its
  manifests, allowed hosts, port-forward and API wait;
* :mod:`.serverenv` - the environment both start with (MLflow's server-side job system off).

Both follow the setup the MLflow notes recommend (sqlite, proxied artifacts, an explicit
``--allowed-hosts`` list); keeping them side by side keeps them alike. The stack imports this
package to deploy its server, never the reverse.
"""

from __future__ import annotations

from harness.tracking.incluster import (
    MLFLOW_NAMESPACE,
    MLFLOW_PORT,
    POD_URI,
    mlflow_allowed_hosts,
    mlflow_server_manifests,
    port_forward,
    wait_tracking_api,
)
from harness.tracking.local import LocalTrackingServer
from harness.tracking.serverenv import SERVER_ENV

__all__ = [
    "MLFLOW_NAMESPACE",
    "MLFLOW_PORT",
    "POD_URI",
    "SERVER_ENV",
    "LocalTrackingServer",
    "mlflow_allowed_hosts",
    "mlflow_server_manifests",
    "port_forward",
    "wait_tracking_api",
]
