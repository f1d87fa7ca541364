"""E2E on a cluster with worker nodes: images reach every node, and a CustomJob lands where it is pinned.

Run with ``--harness-workers 1`` (``tox -e matrix`` does, on another Kubernetes
minor); on a single-node cluster the test fails (it does not skip), so the
single-node tiers deselect the ``multinode`` marker.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from harness import contract, delivery
from harness.kubeapi import Kube
from harness.runs import ProjectRunner

pytestmark = [pytest.mark.e2e, pytest.mark.multinode]

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


def _workers(kube: Kube) -> list[str]:
    return sorted(n.metadata.name for n in kube.core.list_node().items
                  if CONTROL_PLANE_LABEL not in (n.metadata.labels or {}))


def test_trainer_pinned_to_a_worker_runs_there_with_every_image_on_every_node(
    launcher: ProjectRunner, tmp_path: Path
) -> None:
    kube = launcher.stack.cluster.kube
    workers = _workers(kube)
    assert workers, "this test needs worker nodes: run it with --harness-workers 1 (or a kind-config with workers)"
    target = workers[-1]

    base = launcher.spec("trainer")
    template = yaml.safe_load(base.template.read_text())
    template["spec"]["nodeSelector"] = {"kubernetes.io/hostname": target}
    pinned = tmp_path / "customjob-on-worker.yaml"
    pinned.write_text(yaml.safe_dump(template, sort_keys=False))
    run = launcher.run(dataclasses.replace(base, name="trainer-on-worker", template=pinned), alpha=0.5)
    assert run.status == "FINISHED", run.output[-3000:]
    name = run.customjob["metadata"]["name"]
    assert run.customjob["spec"]["nodeSelector"] == {"kubernetes.io/hostname": target}

    pods = kube.core.list_namespaced_pod(launcher.namespace,
                                         label_selector=f"{contract.LABEL_CUSTOMJOB}={name}").items
    assert [p.spec.node_name for p in pods] == [target], [(p.metadata.name, p.spec.node_name) for p in pods]
    assert pods[0].spec.node_selector == {"kubernetes.io/hostname": target}

    route = launcher.stack.cluster.images
    controller = kube.apps.list_deployment_for_all_namespaces(
        label_selector="app.kubernetes.io/name=customjob-controller").items
    images = [run.customjob["spec"]["image"], *(c.image for d in controller
                                                for c in d.spec.template.spec.containers)]
    assert len(images) >= 2, images
    if route.mode == "kind":  # kind: each node holds a copy
        assert route.kind_bin is not None
        assert route.kind_cluster is not None
        nodes = delivery.kind_nodes(str(route.kind_bin), route.kind_cluster)
        assert len(nodes) == 1 + len(workers), nodes
        for image in images:
            assert delivery.missing_on_kind_nodes(nodes, image) == [], f"{image} is not on every node"
    else:  # a registry (the harness's, or one of the user's named localhost:PORT): pods pull its digests
        assert route.registry is not None
        assert all(image.startswith(f"{route.registry}/") and "@sha256:" in image for image in images), \
            (route.registry, images)
        statuses = [c for p in pods for c in p.status.container_statuses or []]
        assert statuses, "the trainer's pod reports its containers"
        # The node pulled the very digest the CustomJob names, from that registry (containerd reports the
        # repository digest as imageID; .image may be the config digest).
        assert [c.image_id for c in statuses] == [run.customjob["spec"]["image"]], \
            [(c.image, c.image_id) for c in statuses]
