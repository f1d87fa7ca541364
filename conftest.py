"""Repository-wide pytest setup.

Nothing to register: the harness's plugin (options, markers, fixtures) is loaded
from its ``pytest11`` entry point, as in any project that installs it.
"""
