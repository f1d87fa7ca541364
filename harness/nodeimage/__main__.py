"""``python -m harness.nodeimage build|print-tag|kind-path|kubectl-path``.

Used by CI to warm the cache before the e2e tier, and by people to find the
tools the harness uses. ``build`` prints per-step timings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness._errors import HarnessError
from harness.nodeimage import (
    ensure_kind_binary,
    ensure_kubectl_binary,
    ensure_node_image,
    node_image_tag,
)
from harness.timing import Phases


def _log(msg: str) -> None:
    print(f"nodeimage: {msg}", file=sys.stderr, flush=True)


def build_parser(prog: str = "python -m harness.nodeimage") -> argparse.ArgumentParser:
    """The command line (also read by the docs site's generated CLI reference)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("command", choices=["build", "print-tag", "kind-path", "kubectl-path"])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache root (default: $HARNESS_CACHE_DIR or /var/cache/mlflow-crd-harness)",
    )
    parser.add_argument(
        "--kubernetes-version",
        default=None,
        help="Kubernetes minor or release from the version table (e.g. 1.35 or v1.35.4; default: the table's default)",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild the node image and component images even if cached"
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m harness.nodeimage") -> int:
    """Entry point; returns the process exit code (``prog``: how the help names the command)."""
    args = build_parser(prog).parse_args(argv)
    try:
        if args.command == "build":
            phases = Phases(sink=_log, label="node image")  # start/end lines, and a heartbeat during a compile
            tag = ensure_node_image(args.cache_dir, kubernetes_version=args.kubernetes_version, force=args.force,
                                    log=_log, timings=phases)
            for line in phases.table().splitlines():
                _log(line)
            print(tag)
        elif args.command == "print-tag":
            print(node_image_tag(args.cache_dir, kubernetes_version=args.kubernetes_version))
        elif args.command == "kind-path":
            print(ensure_kind_binary(args.cache_dir, kubernetes_version=args.kubernetes_version, log=_log))
        else:
            print(ensure_kubectl_binary(args.cache_dir, kubernetes_version=args.kubernetes_version, log=_log))
    except ValueError as exc:
        _log(f"error: {exc}")
        return 2
    except HarnessError as exc:
        _log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
