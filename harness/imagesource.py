"""Where an image comes from: the pinned public one if it can be had, else the registry-less one we build.

One decision, three images. The Python base image (:mod:`harness.baseimage`),
the kind node image (:mod:`harness.toolchain`) and the local registry's image
(:mod:`harness.registry.image`) are each published upstream and pinned, and
each has a registry-less twin we can build on a machine that cannot pull. They
used to choose between the two with three copies of the same rules, and the
copies drifted (one validated its mode, one did not; the errors named fixes in
different ways). :func:`choose` is those rules, once:

1. an override (a named image) wins, after the caller's own check of it;
2. the mode is ``auto`` (the default), ``public`` or ``local``; anything else is refused;
3. ``public`` and ``auto`` try the public image, unless the caller knows it cannot
   be used here (``public_unusable``: then it is never pulled); ``auto`` may first
   settle on an image that is already here (``already_local``), so a warm call
   touches no network;
4. ``public`` failing raises, naming the fix; ``auto`` says why and builds;
   ``local`` builds.

The caller supplies the image-specific parts: how to obtain the public image,
how to build the local one, and the words of the fix. This module knows no
Docker and no image: it is a leaf, testable with fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from harness._errors import ConfigError, PreflightError

__all__ = ["MODES", "Choice", "Mode", "Source", "choose"]

Mode = Literal["auto", "public", "local"]
MODES: tuple[Mode, ...] = ("auto", "public", "local")

Source = Literal["override", "public", "local"]


@dataclass(frozen=True)
class Choice:
    """The image to use, where it came from and why (``reason``: how it was obtained or built)."""

    image: str
    source: Source
    reason: str


def choose(
    *,
    what: str,
    mode: str | None,
    override: str | None,
    public: str,
    obtain_public: Callable[[str], tuple[str | None, str]],
    build_local: Callable[[], str],
    log: Callable[[str], None],
    fix: str,
    local_reason: str,
    override_reason: str = "given",
    mode_setting: str | None = None,
    check_override: Callable[[str], None] | None = None,
    public_unusable: str | None = None,
    already_local: Callable[[], Choice | None] | None = None,
) -> Choice:
    """Choose the image named ``what`` (``"node image"``) and obtain or build it.

    ``obtain_public(ref)`` makes the public image local: ``(how, "")`` (``how``
    is e.g. ``"present"`` or ``"pulled"``) or ``(None, why not)``.
    ``build_local()`` builds (or reuses) the registry-less image and returns its
    reference. ``fix`` says what to do when the public image cannot be had in
    ``public`` mode (``"--node-image-mode local builds ..."``). ``mode_setting``
    names where the mode came from, for the error on a bad one (default: ``what``'s
    mode). ``check_override(ref)`` raises when an override cannot be used as is.
    ``public_unusable`` is why the public image cannot be used on this host (e.g.
    a node image whose kubelet exits on cgroup v1): it is then never pulled.
    ``already_local()`` (``auto`` only, and only where the public image is usable)
    is an image already here, found without the network, to take before any pull.
    """
    if override:
        if check_override is not None:
            check_override(override)
        return Choice(override, "override", override_reason)
    chosen = mode or "auto"
    if chosen not in MODES:
        raise ConfigError(f"{mode_setting or what + ' mode'} must be auto, public or local, not {chosen!r}")
    if chosen in ("auto", "public"):
        if public_unusable:
            if chosen == "public":
                raise PreflightError(f"{what} {public}: {public_unusable}\nfix: {fix}")
            log(f"{what}: not using {public} ({public_unusable}); using the registry-less build")
        else:
            found = already_local() if chosen == "auto" and already_local is not None else None
            if found is not None:
                return found
            how, why = obtain_public(public)
            if how is not None:
                return Choice(public, "public", how)
            if chosen == "public":
                raise PreflightError(f"cannot pull {public}: {why}\nfix: {fix}")
            log(f"{what}: {public} cannot be pulled ({why}); using the registry-less build")
    return Choice(build_local(), "local", local_reason)
