"""The harness's version: the one place it lives (the wheel's metadata, ``--version`` and run manifests read it)."""

__version__ = "0.2.0"
