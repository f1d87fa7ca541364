"""One test bed for all pytest-xdist workers of a run: the first brings it up, the others attach.

Under ``pytest -n N`` every worker is its own process with its own session
fixtures, so a plain session-scoped ``testbed`` would build N clusters (or,
with one cluster name, have N sessions fight over it). Instead the workers of
one run (xdist's ``PYTEST_XDIST_TESTRUNUID``) share a directory under the
state dir:

* ``bringup.lock`` (``flock``): the first worker to ask for the test bed
  brings it up while holding it and writes ``bed.json`` (or ``error.txt``);
  the others wait on the lock and then attach to what the file describes
  (kubeconfig, URIs, images), or fail at once with the owner's error instead
  of repeating a ten-minute bring-up.
* ``<worker>.pid`` at start, ``<worker>.done`` (its failure count) at the end
  of every worker's session, whether it used the test bed or not.

The owner keeps the session lock, the port-forward and the cluster for the
whole run: at its own end it waits until every other worker has finished
(or died: its pid is gone), then ends the test bed once, by the keep-cluster
policy, counting the failures of all workers. Each test still gets a
namespace of its own (``e2e_namespace``), so tests on different workers never
share objects.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import owners
from harness._waiting import Probe, wait_for
from harness.settings import Settings
from harness.timing import Phases

if TYPE_CHECKING:  # the plugin imports this module in every pytest run: the heavy parts only when attaching
    from harness.testbed import Testbed

__all__ = ["XdistRun", "attach", "bed_record"]


@dataclass(frozen=True)
class XdistRun:
    """This process's place in an xdist run: the shared directory, its worker id, how many workers."""

    root: Path
    worker: str
    count: int

    @classmethod
    def current(cls, state_dir: Path, workerinput: Mapping[str, Any] | None) -> XdistRun | None:
        """The run this process is a worker of, or None outside xdist or in its controller.

        From xdist's ``config.workerinput`` (``testrunuid``, ``workerid``,
        ``workercount``), not from the ``PYTEST_XDIST_*`` environment: a pytest
        session that a worker's test *starts* (the fault tier's child sessions,
        a quick start run by a test) inherits that environment but is a session
        of its own. Read from the environment, it took itself for a worker of
        the outer run and attached to another session's test bed.
        """
        if not workerinput:
            return None
        uid, worker = workerinput.get("testrunuid"), workerinput.get("workerid")
        if not uid or not worker:
            return None
        return cls(state_dir / "xdist" / str(uid), str(worker), int(workerinput.get("workercount") or 1))

    @classmethod
    def of_session(cls, config: Any, state_dir: Path) -> XdistRun | None:
        """:meth:`current` for a pytest session's ``config`` (xdist sets ``workerinput`` on its workers only)."""
        return cls.current(state_dir, getattr(config, "workerinput", None))

    def _file(self, name: str) -> Path:
        return self.root / name

    def started(self) -> None:
        """Say this worker exists (its pid tells the owner if it dies without finishing)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._file(f"{self.worker}.pid").write_text(owners.owner_token())

    def finished(self, failures: int) -> None:
        """Say this worker's session is over, with how many of its tests failed."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._file(f"{self.worker}.done").write_text(str(failures))

    @contextlib.contextmanager
    def bringup(self) -> Iterator[None]:
        """Held while one worker brings the test bed up; the others block here meanwhile."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self._file("bringup.lock"), "a+", encoding="utf-8") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def published(self) -> dict[str, Any] | None:
        """What the owner published: ``{"bed": …}`` or ``{"error": …}``; None if nobody did yet."""
        if (path := self._file("error.txt")).exists():
            return {"error": path.read_text()}
        if (path := self._file("bed.json")).exists():
            return {"bed": json.loads(path.read_text())}
        return None

    def publish(self, *, bed: dict[str, Any] | None = None, error: str | None = None) -> None:
        if error is not None:
            self._file("error.txt").write_text(error)
        else:
            self._file("bed.json").write_text(json.dumps(bed, indent=2))

    def others(self) -> list[str]:
        return [f"gw{i}" for i in range(self.count) if f"gw{i}" != self.worker]

    def _state_of(self, worker: str) -> str:
        if self._file(f"{worker}.done").exists():
            return "done"
        pid_file = self._file(f"{worker}.pid")
        if not pid_file.exists():
            return "not started"
        return "running" if owners.is_alive(pid_file.read_text().strip()) else "gone"

    def wait_for_others(self, timeout: float, log: Callable[[str], None]) -> int:
        """Block until every other worker is done or gone; return their failures (a gone one counts as one)."""
        def probe() -> Probe[None]:
            states = {w: self._state_of(w) for w in self.others()}
            busy = sorted(w for w, s in states.items() if s in ("running", "not started"))
            return Probe(not busy, f"waiting for {', '.join(busy)}" if busy else "all done")

        if any(self._state_of(w) in ("running", "not started") for w in self.others()):
            log(f"xdist {self.worker}: the test bed is this worker's; ending it after the other workers finish")
        wait_for(probe, what="the other xdist workers to finish", timeout=timeout, interval=1.0,
                 hint="a worker that hangs keeps the shared cluster; see its tests above")
        failures = 0
        for worker in self.others():
            done = self._file(f"{worker}.done")
            if done.exists():
                failures += int(done.read_text() or 0)
            elif self._state_of(worker) == "gone":
                failures += 1
        return failures


def bed_record(bed: Testbed) -> dict[str, Any]:
    """What another worker needs to use ``bed``: plain data (no clients, no processes)."""
    stack, cluster = bed.stack, bed.cluster
    assert stack is not None, "publish only a started test bed"
    assert cluster is not None, "publish only a started test bed"
    return {
        "cluster": {
            "name": cluster.name, "provider": cluster.provider, "created": cluster.created,
            "fingerprint": cluster.fingerprint, "mlflow_host_port": cluster.mlflow_host_port,
            "node_image": cluster.node_image, "images": cluster.images.to_record(), "shared": cluster.shared,
            "kube": {"kubeconfig": str(cluster.kube.kubeconfig), "kubectl_bin": str(cluster.kube.kubectl_bin),
                     "context": cluster.kube.context},
        },
        "stack": {"tracking_uri": stack.tracking_uri, "pod_tracking_uri": stack.pod_tracking_uri,
                  "namespaces": list(stack.namespaces), "deployments": list(stack.deployments),
                  "redeployed": stack.redeployed},
        "session": bed.session,
        "built": {name: asdict(img) for name, img in bed.built.items()},
        "manifest": bed.manifest,
    }


def attach(settings: Settings, record: Mapping[str, Any], *, phases: Phases,
           log: Callable[[str], None]) -> Testbed:
    """A :class:`Testbed` over another worker's cluster and stack; its ``finish()`` ends nothing."""
    from harness.clusters import Cluster, provider_class
    from harness.delivery import route_from_record
    from harness.images import BuiltImage
    from harness.kubeapi import Kube
    from harness.stack import Stack
    from harness.testbed import Testbed

    c, s = record["cluster"], record["stack"]
    kube = Kube(Path(c["kube"]["kubeconfig"]), Path(c["kube"]["kubectl_bin"]), c["kube"]["context"])
    cluster = Cluster(name=c["name"], provider=c["provider"], kube=kube, created=c["created"],
                      images=route_from_record(c["images"]), fingerprint=c["fingerprint"],
                      mlflow_host_port=c["mlflow_host_port"], node_image=c["node_image"], shared=c["shared"])
    # The owner's node-log export is a bound method; this process gets its own from the provider.
    exporter = provider_class(c["provider"]).logs_exporter(settings, cluster)
    cluster = dataclasses.replace(cluster, export_logs_with=exporter)
    bed = Testbed(settings, phases=phases, log=log)
    bed.cluster = cluster
    bed.kubectl_bin = kube.kubectl_bin
    bed.stack = Stack(cluster=cluster, tracking_uri=s["tracking_uri"], pod_tracking_uri=s["pod_tracking_uri"],
                      namespaces=tuple(s["namespaces"]), deployments=tuple(s["deployments"]),
                      redeployed=s["redeployed"])
    bed.session = record["session"]  # the owner's: one session, however many workers
    bed.built = {name: BuiltImage(**img) for name, img in record["built"].items()}
    bed.manifest = dict(record.get("manifest") or {})
    return bed
