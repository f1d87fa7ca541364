"""A local container registry for kind clusters (kind's local-registry pattern).

Why a registry at all: ``kind load`` copies a whole image into every node on
every load, while a registry lets nodes pull only missing layers and lets pod
specs pin images by digest. On registry-less machines the registry image is
built from Go modules (:mod:`harness.registry.image`).

* :func:`ensure_registry_image` - the image: public ``registry`` if it can be had, else built.
* :class:`LocalRegistry` - the container: start/reuse, wire kind nodes, push, query.
* :func:`kind_config_patches` - what a kind config needs so the nodes use it.
"""

from __future__ import annotations

from harness.imagerefs import digest_ref, parse_ref, registry_ref
from harness.registry.image import ensure_registry_image
from harness.registry.local import LocalRegistry
from harness.registry.pushlog import PushReport
from harness.registry.wiring import hosting_configmap, hosts_toml, kind_config_patches

__all__ = [
    "LocalRegistry",
    "PushReport",
    "digest_ref",
    "ensure_registry_image",
    "hosting_configmap",
    "hosts_toml",
    "kind_config_patches",
    "parse_ref",
    "registry_ref",
]
