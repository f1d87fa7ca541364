"""Cluster-scoped objects of the stack on a cluster the harness did not create: use, refuse, never overwrite.

On a shared cluster (``cluster = existing``) the stack's CRDs, ClusterRoles and
ClusterRoleBindings may already be there, installed by the platform team with
their own tools. Applying ours over them with ``--force-conflicts`` would take
their fields and change what everyone else on the cluster runs. So before
anything is applied, each cluster-scoped object of the stack is looked up:

* absent: the harness creates it, labelled as its own (the next session sees that);
* labelled as the harness's: applied as usual (an earlier session made it);
* someone else's, and it already says everything ours says (every field of
  ours has the same value there; the API server's defaults may add more): it is
  used as it is, and not applied;
* someone else's and different: the session stops before applying anything,
  with the differences and the fix, unless ``cluster-objects = "use"`` says to
  run against the cluster's own as they are.

Nothing here writes to the cluster; :func:`plan` only reads and decides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness._errors import HarnessError

__all__ = ["CLUSTER_SCOPED_KINDS", "Plan", "differences", "plan"]

CLUSTER_SCOPED_KINDS = frozenset({
    "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "PriorityClass", "StorageClass", "APIService", "IngressClass", "RuntimeClass",
})
"""Kinds with no namespace that a stack may carry (Namespaces are checked on their own, by label)."""

_IGNORED_TOP = frozenset({"apiVersion", "kind", "metadata", "status"})
_SHOWN = 12
"""Differences listed per object in the error (the rest are counted)."""


def differences(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Where ``theirs`` does not already say what ``ours`` says: ``path: ours X, cluster's Y`` lines.

    A mapping matches when every key of ours matches in theirs (extra keys of
    theirs, such as the API server's defaults, are fine); a list when it has the
    same length and every item matches; anything else when equal.
    """
    if isinstance(ours, Mapping):
        if not isinstance(theirs, Mapping):
            return [f"{path or '.'}: ours is a mapping, the cluster's {_short(theirs)}"]
        found: list[str] = []
        for key, value in ours.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in theirs:
                found.append(f"{where}: ours {_short(value)}, the cluster's has none")
            else:
                found += differences(value, theirs[key], where)
        return found
    if isinstance(ours, list):
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            return [f"{path}: ours {_short(ours)}, the cluster's {_short(theirs)}"]
        found = []
        for i, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
            found += differences(mine, other, f"{path}[{i}]")
        return found
    return [] if ours == theirs else [f"{path}: ours {_short(ours)}, the cluster's {_short(theirs)}"]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Plan:
    """What to do with the stack's documents on this cluster."""

    apply: list[dict[str, Any]] = field(default_factory=list)
    """Documents to apply (the namespaced ones, and cluster-scoped ones that are absent or the harness's)."""
    used: list[str] = field(default_factory=list)
    """Cluster-scoped objects of someone else's that the session runs against as they are (``Kind/name``)."""
    created: list[str] = field(default_factory=list)
    """Cluster-scoped objects the session creates (absent before), labelled as the harness's."""


def plan(docs: Sequence[dict[str, Any]], live: Callable[[str, str, str], dict[str, Any] | None], *,
         label: tuple[str, str], policy: str, cluster: str) -> Plan:
    """Decide, per cluster-scoped document, from ``live(apiVersion, kind, name)`` (None when absent).

    ``label`` is the (key, value) that marks the harness's own objects; absent
    ones get it. ``policy`` is the ``cluster-objects`` setting: ``refuse`` stops
    on a different object of someone else's, ``use`` takes it as it is.
    """
    key, value = label
    out = Plan()
    refused: list[str] = []
    for doc in docs:
        kind, name = str(doc.get("kind")), str((doc.get("metadata") or {}).get("name"))
        if kind not in CLUSTER_SCOPED_KINDS:
            out.apply.append(doc)
            continue
        current = live(str(doc.get("apiVersion")), kind, name)
        if current is None:
            doc.setdefault("metadata", {}).setdefault("labels", {})[key] = value
            out.created.append(f"{kind}/{name}")
            out.apply.append(doc)
            continue
        if ((current.get("metadata") or {}).get("labels") or {}).get(key) == value:
            doc.setdefault("metadata", {}).setdefault("labels", {})[key] = value
            out.apply.append(doc)
            continue
        found = differences({k: v for k, v in doc.items() if k not in _IGNORED_TOP},
                            {k: v for k, v in current.items() if k not in _IGNORED_TOP})
        if found and policy != "use":
            shown = "\n".join(f"    {line}" for line in found[:_SHOWN])
            more = f"\n    ... and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
            refused.append(f"  {kind} {name} ({len(found)} difference(s)):\n{shown}{more}")
            continue
        out.used.append(f"{kind}/{name}" + (f" (differs from the stack's in {len(found)} field(s))" if found else ""))
    if refused:
        raise HarnessError(
            f"cluster {cluster} already has cluster-scoped objects of the stack that the harness did not make, and "
            "they differ from the stack's; the harness never overwrites them (other teams may run on them):\n"
            + "\n".join(refused)
            + "\nFix: make the stack's copies match the cluster's (e.g. point `stack` at the kustomize dir that "
            "installed them), or set cluster-objects = \"use\" to run against the cluster's as they are, or remove "
            "them from the cluster if they are leftovers nobody uses. Nothing was applied.")
    return out
