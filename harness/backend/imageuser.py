"""Would the project image run as root where the pods must not? Said right after the build.

Pods that set ``runAsNonRoot: true`` without a ``runAsUser`` take the user from the image's
config. The kubelet then refuses to start a container whose image runs as root, or as a
user *name* (it cannot tell a name is not root): ``CreateContainerConfigError``, after the
image was built, delivered and scheduled. Both facts are known when the build ends, so
the backend checks them there and stops with the fix instead. The stub CustomJob's
controller always asks for ``runAsNonRoot`` without a user; for other kinds the template
says so itself (or a controller this harness cannot see, which is then not checked).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["demands_image_user", "root_problem"]


def demands_image_user(template: Mapping[str, Any]) -> bool:
    """Whether some ``securityContext`` in ``template`` requires non-root and leaves the user to the image."""
    def walk(node: Any) -> bool:
        if isinstance(node, Mapping):
            context = node.get("securityContext")
            if isinstance(context, Mapping) and context.get("runAsNonRoot") is True and "runAsUser" not in context:
                return True
            return any(walk(value) for value in node.values())
        if isinstance(node, list):
            return any(walk(item) for item in node)
        return False

    return walk(template)


def root_problem(user: str | None, image: str) -> str | None:
    """Why a ``runAsNonRoot`` pod refuses an image with this ``USER``; None for a numeric non-root uid."""
    name = (user or "").split(":", 1)[0].strip()
    fix = ("add a numeric non-root user to the Dockerfile of the MLproject's docker_env.image, e.g. "
           "`USER 10001:10001` (a number: the kubelet cannot check a name), or set runAsUser in the template")
    if name in ("", "0", "root"):
        return (f"image {image} runs as root ({'no USER' if not name else f'USER {name}'}), and its pods must run "
                f"as non-root (runAsNonRoot): they would fail with CreateContainerConfigError; fix: {fix}")
    if not name.isdigit():
        return (f"image {image} runs as the user name {name!r}; pods that must run as non-root (runAsNonRoot) "
                f"refuse a name they cannot check; fix: {fix}")
    return None
