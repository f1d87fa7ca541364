"""What a kind cluster needs to pull from the local registry (pure text, no I/O).

Three pieces, following kind's local-registry pattern:

* each node's containerd must read per-registry host files from
  ``/etc/containerd/certs.d`` (its ``config_path``). Public kind node images
  (kind >= 0.27) already do; our registry-less node image does not, so
  :func:`kind_config_patches` adds it through kind's own
  ``containerdConfigPatches`` instead of rebuilding the image;
* a ``hosts.toml`` per node that sends pulls of ``localhost:<port>/…`` to the
  registry container by its name on the ``kind`` Docker network. The same
  reference then works on the host (``docker push``) and on the nodes, so one
  image reference can go into a pod spec;
* the ``kube-public/local-registry-hosting`` ConfigMap (KEP-1755), so tools in
  the cluster can discover where to push.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.versions import Release

import json
import tomllib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CERTS_DIR",
    "HOSTING_CONFIGMAP_NAME",
    "HOSTING_CONFIGMAP_NAMESPACE",
    "HOSTING_HELP_URL",
    "containerd_config_paths",
    "cri_registry_config_paths",
    "hosting_configmap",
    "hosts_toml",
    "hosts_toml_path",
    "kind_config_patches",
    "loopback_port",
]

#: Where containerd looks for ``<registry host>/hosts.toml`` once ``config_path`` points here.
CERTS_DIR = "/etc/containerd/certs.d"

HOSTING_CONFIGMAP_NAMESPACE = "kube-public"
HOSTING_CONFIGMAP_NAME = "local-registry-hosting"
#: Shown by tools that read the ConfigMap; kind's page explains the setup.
HOSTING_HELP_URL = "https://kind.sigs.k8s.io/docs/user/local-registry/"

# containerd 1.x (config version 2) keeps registry settings in the CRI plugin;
# containerd 2.x (version 3) moved them to the CRI images plugin.
_REGISTRY_TABLES = (
    ("io.containerd.grpc.v1.cri", "registry"),
    ("io.containerd.cri.v1.images", "registry"),
)


def loopback_port(address: str | None) -> int | None:
    """The port of a registry address on this host's loopback (``localhost:5001``, ``127.0.0.1:5001``), else None.

    Such an address means the same thing on the host (``docker push``) and, once a
    ``hosts.toml`` sends it to the container publishing that port, on kind nodes:
    kind's documented local-registry pattern, whoever started the container.
    """
    if address is None:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or host not in ("localhost", "127.0.0.1") or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return int(port)


def node_lacks_config_path(registry_less: bool, kubernetes_version: str | Release | None = None) -> bool:
    """True for the one node image whose containerd sets no ``config_path``: the registry-less
    build with Debian's containerd 1.6 (the 1.34 row). The 1.35+ builds carry containerd 2.x
    with a version-3 config that sets it, as kind's published images do."""
    from harness.versions import release_for

    return registry_less and release_for(kubernetes_version).runtime is None


def kind_config_patches(node_image_is_local: bool) -> list[str]:
    """``containerdConfigPatches`` for the kind config so nodes read :data:`CERTS_DIR`.

    Only our registry-less node image needs one: its containerd 1.6 config
    (version 2) sets no ``config_path``. kind merges the patch into the node's
    ``/etc/containerd/config.toml`` and restarts containerd before kubeadm
    runs. Public node images already set it, and for their containerd 2.x
    (config version 3) a version-2 table would be the wrong place, so they
    get nothing.
    """
    if not node_image_is_local:
        return []
    return [f'[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{CERTS_DIR}"\n']


def containerd_config_paths(config_dump: str) -> list[str]:
    """The registry ``config_path`` directories in ``containerd config dump`` output (empty if unset).

    containerd accepts several directories separated by ``:``; the caller
    checks that :data:`CERTS_DIR` is one of them before writing host files
    there, because a file containerd never reads would fail only later, as
    an image pull error in some pod.
    """
    data = tomllib.loads(config_dump)
    plugins = data.get("plugins", {})
    found: list[str] = []
    for plugin, table in _REGISTRY_TABLES:
        section = plugins.get(plugin, {})
        value = section.get(table, {}).get("config_path", "") if isinstance(section, Mapping) else ""
        if isinstance(value, str) and value:
            found.extend(p for p in value.split(":") if p)
    return found


def cri_registry_config_paths(crictl_info: str) -> list[str] | None:
    """The registry ``configPath`` the *running* containerd uses, from ``crictl info`` JSON.

    Preferred over the config file: kind restarts containerd after patching
    its config only when it finds it running, so the file can say one thing
    and the daemon another. ``None`` when the output has no such field (then
    the caller falls back to :func:`containerd_config_paths`).
    """
    def find(node: Any) -> str | None:
        if isinstance(node, Mapping):
            registry = node.get("registry")
            if isinstance(registry, Mapping) and isinstance(registry.get("configPath"), str):
                return str(registry["configPath"])
            for value in node.values():
                if (hit := find(value)) is not None:
                    return hit
        return None

    try:
        value = find(json.loads(crictl_info))
    except ValueError:
        return None
    return None if value is None else [p for p in value.split(":") if p]


def hosts_toml_path(registry_host: str) -> str:
    """Where the host file for ``registry_host`` (e.g. ``localhost:5001``) goes on a node."""
    if "/" in registry_host or not registry_host:
        raise ValueError(f"not a registry host: {registry_host!r}")
    return f"{CERTS_DIR}/{registry_host}/hosts.toml"


def hosts_toml(registry_host: str, upstream: str) -> str:
    """A containerd ``hosts.toml`` sending pulls of ``registry_host`` to ``upstream``.

    ``upstream`` is ``http://<registry container>:5000``: the node reaches the
    registry container by name on the ``kind`` network, in plain HTTP (the
    registry is on loopback and the Docker network only, never exposed).
    Only pull and resolve: nodes never push.
    """
    if not upstream.startswith(("http://", "https://")) or '"' in upstream:
        raise ValueError(f"upstream must be an http(s) URL: {upstream!r}")
    return (
        f"# Written by harness.registry: pulls of {registry_host}/... go to the registry container.\n"
        f'[host."{upstream}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )


def hosting_configmap(registry_host: str, help_url: str = HOSTING_HELP_URL) -> dict[str, object]:
    """The KEP-1755 ``local-registry-hosting`` ConfigMap announcing ``registry_host``.

    Values are written as JSON strings, which YAML reads verbatim, so a host
    or URL can never change the document's structure.
    """
    hosting = f"host: {json.dumps(registry_host)}\nhelp: {json.dumps(help_url)}\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": HOSTING_CONFIGMAP_NAME,
            "namespace": HOSTING_CONFIGMAP_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "mlflow-crd-harness"},
        },
        "data": {"localRegistryHosting.v1": hosting},
    }
