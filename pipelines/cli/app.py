"""The ``uebench`` command line (architecture.md §4): the Typer app and its error handling.

Each command lives in its own ``pipelines.cli.*`` module exposing ``register(app)``; :data:`COMMAND_MODULES`
lists the modules that are built. User mistakes (:class:`~pipelines.errors.UserError`, and ``ValueError`` or
``FileNotFoundError`` raised by the analysis packages on bad input) are printed as one ``error:`` line with
exit code 2, never as a traceback.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading

import typer

from pipelines.engine.lifecycle import EXIT_INTERRUPTED
from pipelines.errors import UserError
from results.store import StoreError

COMMAND_MODULES: tuple[str, ...] = (
    "pipelines.cli.demo",
    "pipelines.cli.run",
    "pipelines.cli.cood",
    "pipelines.cli.taxonomy",
    "pipelines.cli.models",
    "pipelines.cli.hsc",
    "pipelines.cli.results",
    "pipelines.cli.compare",
)

app = typer.Typer(
    name="uebench",
    help="Benchmark the uncertainty estimation of pretrained ImageNet classifiers: selective prediction, "
    "class-out-of-distribution detection and hierarchical selective classification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (console-script entry point). SIGTERM (how cluster schedulers
    stop a job) is handled like Ctrl-C: the run is recorded ``interrupted`` and the exit code is 130."""
    previous = _terminate_as_interrupt()
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    try:
        result = app(args=argv, prog_name="uebench", standalone_mode=False)
    except (UserError, StoreError, ValueError, FileNotFoundError, PermissionError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # usage errors (unknown option, missing argument, no command) show themselves
        if _is_usage_error(exc):
            exc.show()
            return exc.exit_code
        raise
    if result == EXIT_INTERRUPTED:  # typer turns Ctrl-C (KeyboardInterrupt) into this return value
        print("error: interrupted", file=sys.stderr)
    return result if isinstance(result, int) else 0


def _terminate_as_interrupt() -> signal.Handlers | None:
    """Install the SIGTERM handler (main thread only); returns the previous one to restore."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, interrupt)


def _is_usage_error(exc: Exception) -> bool:
    """Whether ``exc`` is a command-line usage error: click's ``ClickException``, or the same class of the copy
    of click that typer ≥ 0.2x carries inside itself (a subclass of ``typer.TyperException``)."""
    kinds: tuple[type[BaseException], ...] = (typer.TyperException,) if hasattr(typer, "TyperException") else ()
    try:
        import click  # typer < 0.2x uses click itself (and ray installs it anyway)

        kinds = (*kinds, click.ClickException)
    except ImportError:
        pass
    return isinstance(exc, kinds) and hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int)

