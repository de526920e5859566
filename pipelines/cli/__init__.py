"""The ``uebench`` command line (architecture.md §4).

The app and its commands live in :mod:`pipelines.cli.app`; this package stays import-light so that one command
module (``pipelines.cli.taxonomy``, say) can be imported without loading every command's dependencies (torch,
Ray).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (console-script entry point ``uebench``)."""
    from pipelines.cli.app import main as run_app

    return run_app(argv)
