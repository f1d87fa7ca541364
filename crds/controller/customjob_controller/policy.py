"""What the controller is willing to do on a CustomJob's behalf, read once from its environment.

Creating a CustomJob makes the controller act with *its* identity: it calls the
tracking server named in ``spec.mlflow.trackingUri`` (with the controller's
``MLFLOW_TRACKING_TOKEN``, if it has one) and closes the run ``runId`` names;
and it creates a Job that runs under ``spec.serviceAccountName`` and reads the
Secrets the env names. Anyone who may create CustomJobs in a namespace may
therefore do what a Job there may do. This module bounds the first part
always and the second on request:

* ``CUSTOMJOB_ALLOWED_TRACKING_URIS``: comma-separated origins
  (``scheme://host[:port][/path-prefix]``) the controller may call. Default:
  the in-cluster server, :data:`DEFAULT_TRACKING_URI`. ``*`` allows any (the
  old behaviour; then the token is still sent only to listed origins, i.e.
  to none). A CustomJob naming another server fails before its Job exists.
* ``CUSTOMJOB_ALLOWED_SERVICE_ACCOUNTS`` / ``CUSTOMJOB_ALLOWED_SECRETS``:
  comma-separated names; set but empty means none; ``*`` or unset means any
  (Kubernetes RBAC on Jobs is then the only bound, as for a plain Job). The
  shipped Deployment allows the namespace's own ``default`` ServiceAccount and
  no Secret: a CustomJob cannot borrow a more powerful identity or read a
  Secret of its namespace unless the cluster admin widens the lists.
* ``CUSTOMJOB_IMAGE_PULL_GRACE_SECONDS`` (default 45: the kubelet retries at about 10 and 30 s): how long image pull
  errors may last before they fail the job (a registry restarting is not a
  bad image). ``CUSTOMJOB_POD_CREATE_GRACE_SECONDS`` (default 30): how long
  the Job controller may be refused a Pod (ResourceQuota, LimitRange,
  admission) before the CustomJob fails with the refusal's message.

Bad values stop the controller at start-up with the variable and the fix,
instead of silently meaning "allow everything".
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping
from typing import Any

DEFAULT_TRACKING_URI = "http://mlflow.mlflow.svc.cluster.local:5000"
"""The tracking server the harness deploys in-cluster (namespace ``mlflow``, port 5000)."""

ENV_TRACKING_URIS = "CUSTOMJOB_ALLOWED_TRACKING_URIS"
ENV_SERVICE_ACCOUNTS = "CUSTOMJOB_ALLOWED_SERVICE_ACCOUNTS"
ENV_SECRETS = "CUSTOMJOB_ALLOWED_SECRETS"
ENV_PULL_GRACE = "CUSTOMJOB_IMAGE_PULL_GRACE_SECONDS"
ENV_CREATE_GRACE = "CUSTOMJOB_POD_CREATE_GRACE_SECONDS"
ENV_POD_STOP = "CUSTOMJOB_POD_STOP_SECONDS"

_DEFAULT_PORTS = {"http": 80, "https": 443}


class PolicyError(ValueError):
    """A policy variable has a value the controller cannot use (startup refuses)."""


@dataclasses.dataclass(frozen=True)
class Origin:
    """``scheme://host:port`` plus an optional path prefix, normalised for comparison."""

    scheme: str
    host: str
    port: int
    path: str = ""

    @classmethod
    def parse(cls, uri: str) -> Origin:
        """Parse a URI; raise :class:`PolicyError` for anything that is not plain http(s)."""
        parts = urllib.parse.urlsplit(uri.strip())
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise PolicyError(f"{uri!r} is not an http:// or https:// URI")
        if parts.username is not None or parts.password is not None:
            raise PolicyError(f"{uri!r} carries credentials; list the origin only")
        host = (parts.hostname or "").lower()
        if not host:
            raise PolicyError(f"{uri!r} has no host")
        if parts.query or parts.fragment or "?" in uri or "#" in uri:
            raise PolicyError(f"{uri!r} has a query or fragment; a tracking URI is scheme://host[:port][/path]")
        if any(urllib.parse.unquote(seg) in (".", "..") or "\\" in urllib.parse.unquote(seg)
               for seg in parts.path.split("/")):
            # /mlflow/../tenant-app (or %2e%2e) would pass a path-prefix check and reach another app.
            raise PolicyError(f"{uri!r} has '.' or '..' path segments; write the path it means")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise PolicyError(f"{uri!r} has an invalid port") from exc
        return cls(scheme, host, port, parts.path.rstrip("/"))

    def admits(self, other: Origin) -> bool:
        """Same scheme, host and port; the path lies under ours. ``*`` in our host matches one DNS label."""
        if (self.scheme, self.port) != (other.scheme, other.port):
            return False
        mine, theirs = self.host.split("."), other.host.split(".")
        if len(mine) != len(theirs):
            return False
        if not all(m == t or (m == "*" and bool(t)) for m, t in zip(mine, theirs, strict=True)):
            return False
        return not self.path or other.path == self.path or other.path.startswith(self.path + "/")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


def _names(raw: str | None) -> frozenset[str] | None:
    """Unset or ``*``: None (any); set: those names, none when empty."""
    if raw is None or raw.strip() == "*":
        return None
    return frozenset(n.strip() for n in raw.split(",") if n.strip())


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise PolicyError(f"{name}={raw!r}: expected seconds between 0 and 86400")
    return value


@dataclasses.dataclass(frozen=True)
class Policy:
    """The controller's limits; :meth:`from_env` is how the Deployment sets them."""

    tracking_uris: tuple[Origin, ...] = (Origin.parse(DEFAULT_TRACKING_URI),)
    any_tracking_uri: bool = False
    service_accounts: frozenset[str] | None = None
    secrets: frozenset[str] | None = None
    image_pull_grace: float = 45.0
    pod_create_grace: float = 30.0
    pod_stop_seconds: float = 600.0
    """How long the Pods of a Job the controller stopped are waited for before ``PodsDidNotStop`` (a NotReady
    node keeps them forever); the run is then closed and the Job released all the same."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Policy:
        """Read the ``CUSTOMJOB_*`` variables; raise :class:`PolicyError` naming the variable and the fix."""
        raw = environ.get(ENV_TRACKING_URIS)
        origins: tuple[Origin, ...] = cls.tracking_uris
        any_uri = False
        if raw is not None and raw.strip():
            entries = [e.strip() for e in raw.split(",") if e.strip()]
            any_uri = "*" in entries
            try:
                origins = tuple(Origin.parse(e) for e in entries if e != "*")
            except PolicyError as exc:
                raise PolicyError(f"{ENV_TRACKING_URIS}: {exc} (expected e.g. {DEFAULT_TRACKING_URI})") from exc
        return cls(
            tracking_uris=origins,
            any_tracking_uri=any_uri,
            service_accounts=_names(environ.get(ENV_SERVICE_ACCOUNTS)),
            secrets=_names(environ.get(ENV_SECRETS)),
            image_pull_grace=_seconds(environ, ENV_PULL_GRACE, 45.0),
            pod_create_grace=_seconds(environ, ENV_CREATE_GRACE, 30.0),
            pod_stop_seconds=_seconds(environ, ENV_POD_STOP, 600.0),
        )

    def listed(self, uri: str) -> bool:
        """True when ``uri`` is under an explicitly listed origin (the only ones that get the token)."""
        try:
            target = Origin.parse(uri)
        except PolicyError:
            return False
        return any(o.admits(target) for o in self.tracking_uris)

    def tracking_uri_allowed(self, uri: str) -> bool:
        """True when the controller may call ``uri`` at all."""
        return self.any_tracking_uri or self.listed(uri)

    def refusal(self, spec: Mapping[str, Any]) -> tuple[str, str] | None:
        """``(reason, message)`` when the spec asks for something this controller will not do, else None."""
        uri = (spec.get("mlflow") or {}).get("trackingUri")
        if uri and not self.tracking_uri_allowed(uri):
            allowed = ", ".join(str(o) for o in self.tracking_uris) or "none"
            return (
                "TrackingUriNotAllowed",
                f"spec.mlflow.trackingUri {uri!r} is not one this controller may call (allowed: {allowed}); "
                f"use an allowed tracking server, or have the cluster admin add its origin to the "
                f"controller's {ENV_TRACKING_URIS}",
            )
        account = spec.get("serviceAccountName")
        if account and self.service_accounts is not None and account not in self.service_accounts:
            return (
                "ServiceAccountNotAllowed",
                f"spec.serviceAccountName {account!r} is not allowed here (allowed: "
                f"{', '.join(sorted(self.service_accounts)) or 'none'}); pick one of those, or have the cluster "
                f"admin add it to {ENV_SERVICE_ACCOUNTS}",
            )
        if self.secrets is not None:
            for i, entry in enumerate(spec.get("env") or ()):
                ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
                if ref and ref.get("name") not in self.secrets:
                    return (
                        "SecretNotAllowed",
                        f"spec.env[{i}].valueFrom.secretKeyRef.name {ref.get('name')!r} is not allowed here "
                        f"(allowed: {', '.join(sorted(self.secrets)) or 'none'}); have the cluster admin add it to "
                        f"{ENV_SECRETS}",
                    )
        return None

    def describe(self) -> str:
        """One log line for start-up."""
        uris = "any" if self.any_tracking_uri else ", ".join(str(o) for o in self.tracking_uris) or "none"
        sas = "any" if self.service_accounts is None else ", ".join(sorted(self.service_accounts)) or "none"
        secrets = "any" if self.secrets is None else ", ".join(sorted(self.secrets)) or "none"
        return (f"policy: tracking URIs {uris}; service accounts {sas}; secrets {secrets}; "
                f"image pull grace {self.image_pull_grace:g} s; pod create grace {self.pod_create_grace:g} s; "
                f"wait for a stopped Job's Pods {self.pod_stop_seconds:g} s")
