"""Getting images built on this host onto a cluster's nodes, for the test bed and the MLflow backend alike.

* :mod:`.routes` - the :class:`Route` seam (deliver, what the backend is told,
  record/restore) and its kind-load, registry-push and no-op implementations;
* :mod:`.kindload` - ``kind load`` verified on every node;
* :mod:`.push` - ``docker push`` by the SDK, with a layer report, to a digest.

It sits below both users: the harness core never imports the backend to
deliver, and the backend never imports the harness's test bed.
"""

from __future__ import annotations

from harness._errors import DeliveryError
from harness.delivery.kindload import (
    image_on_node,
    kind_load,
    kind_load_archive,
    kind_nodes,
    load_verified,
    missing_on_kind_nodes,
    normalize_ref,
    verify_on_kind_nodes,
)
from harness.delivery.push import DeliveredImage, PushedLayers, content_tag, push_to_registry
from harness.delivery.routes import ROUTES, KindLoad, NoDelivery, RegistryPush, Route, route_from_record

__all__ = [
    "ROUTES",
    "DeliveredImage",
    "DeliveryError",
    "KindLoad",
    "NoDelivery",
    "PushedLayers",
    "RegistryPush",
    "Route",
    "content_tag",
    "image_on_node",
    "kind_load",
    "kind_load_archive",
    "kind_nodes",
    "load_verified",
    "missing_on_kind_nodes",
    "normalize_ref",
    "push_to_registry",
    "route_from_record",
    "verify_on_kind_nodes",
]
