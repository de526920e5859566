"""A workspace's life cycle: one run at a time, interrupted runs and stale temporary files, exit codes.

**One run per workspace.** A run holds :class:`WorkspaceLock` (``fcntl.flock`` on ``<workspace>/.uebench.lock``)
for its whole life; a second run on the same workspace stops at once with a one-line
:class:`~pipelines.errors.UserError` naming the holder (run id, command, pid, host, start time). The kernel
drops the lock when its holder exits, however it exits (``kill -9`` included), so the next run simply takes a
dead holder's lock over. ``flock`` needs a filesystem whose locks work across the processes (and hosts) that
share the workspace: a local disk, or NFSv4 (Linux emulates ``flock`` with NFS byte-range locks); on a
filesystem without working locks (some FUSE or old NFSv3 mounts without lockd) two runs are not kept apart.

**Housekeeping.** A driver killed mid-run leaves its ``runs`` row ``running`` and possibly temporary files of
its atomic writes. The read-side commands (``sql``, ``report``, ``cood build``, ``hsc calibrate``) call
:func:`open_workspace`, which, only when no live process holds the lock, takes it briefly, marks such rows
``interrupted`` (:func:`mark_interrupted_runs`) and deletes the leftovers (:func:`remove_stale_temp`). While a
run holds the lock it does nothing, so reading a workspace during a run always works.

**Exit codes** of ``uebench`` commands:

====================  =====  ===========================================================================
constant              code   meaning
====================  =====  ===========================================================================
``EXIT_OK``           0      everything ran and its results are stored
``EXIT_FAILED``       1      a run in which every model failed, or an analysis that could not run at all
``EXIT_USAGE``        2      bad input (paths, specs, options, a busy workspace): one ``error:`` line
``EXIT_PARTIAL``      3      some models or analyses failed; the others' results are stored
``EXIT_INTERRUPTED``  130    interrupted (Ctrl-C); the run is recorded ``interrupted``
====================  =====  ===========================================================================

:func:`exit_code_for` maps a ``runs.status`` (ok, partial, failed, interrupted) to its code.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from pipelines.errors import UserError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130

_EXIT_CODES = {"ok": EXIT_OK, "partial": EXIT_PARTIAL, "failed": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}

LOCK_FILENAME = ".uebench.lock"

# Seconds an acquirer keeps retrying while the lock is held only for housekeeping (open_workspace) or by a
# holder that has not written its record yet; a run holder makes it fail at once.
HOUSEKEEPING_WAIT_S = 5.0

# Temporary files of the repo's atomic writes: ".<name>.<token>.tmp" (uuid hex, pid or mkstemp suffix) and the
# decode cache of uebench before 2026-12-03 (".<name>.<token>.tmp.npy"), still cleaned from older workspaces.
_TEMP_FILE = re.compile(r"^\..+\.tmp(\.npy)?$")
# Workspace folders whose files are written through such temporary files (searched recursively).
_TEMP_FOLDERS = ("outputs", "features", "reports", "datasets", "cache", "cood")
# Temporary files and folders a run or the demo leaves at the workspace top (or in data/) when killed.
_TOP_PATTERNS = (".attempts-*", ".write-test-*")
_DATA_PATTERNS = (".staging-*", ".*.tmp", "recipe.tmp")
# A temporary file younger than this may belong to a command that is writing it now (a report, a C-OOD
# export, a starting run's write probe), which never holds the lock for long: left alone.
STALE_AFTER_S = 60.0


def exit_code_for(status: str) -> int:
    """The exit code of a finished run whose ``runs.status`` is ``status`` (ok, partial, failed, interrupted).

    Raises ValueError for any other status (``running`` is not finished).
    """
    try:
        return _EXIT_CODES[status]
    except KeyError:
        raise ValueError(f"no exit code for run status {status!r}; known: {', '.join(_EXIT_CODES)}") from None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie (exited, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _read_record(path: Path) -> dict[str, Any] | None:
    """The holder record in lock file ``path``; None when missing, empty or not a record."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "pid" in record else None


def _since(started_at: object) -> str:
    """``HH:MM UTC`` (today) or ``YYYY-MM-DD HH:MM UTC`` of an ISO timestamp; the text itself if unparsable."""
    try:
        when = dt.datetime.fromisoformat(str(started_at).replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return str(started_at)
    return when.strftime("%H:%M UTC" if when.date() == _utc_now().date() else "%Y-%m-%d %H:%M UTC")


def describe_holder(workspace: Path, record: dict[str, Any] | None) -> str:
    """The one-line "workspace … is in use by …" message for a lock held by ``record`` (None: unknown)."""
    if record is None:
        who = "another uebench process (starting up)"
    else:
        where = f"pid {record.get('pid')} on host {record.get('host')}, since {_since(record.get('started_at'))}"
        command = f"`{record.get('command')}`"
        run_id = record.get("run_id")
        who = f"run {run_id} ({command}, {where})" if run_id else f"{command} ({where})"
    return f"workspace {workspace} is in use by {who}; wait for it to finish or use another --workspace"


class WorkspaceLock:
    """The exclusive lock of a workspace (``<workspace>/.uebench.lock``), held by one process at a time.

    Take it with :meth:`acquire` (a context manager: ``with WorkspaceLock.acquire(ws, run_id, "uebench run"):``)
    and keep it for the whole run; :meth:`release` (or leaving the ``with``) frees it. The lock is
    ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the open lock file, so the kernel frees it when the holder dies and a
    dead holder's lock is taken over by the next acquirer; this needs a filesystem with working locks (a local
    disk, NFSv4). The file stays in place (deleting it would let two processes lock two different inodes); it
    holds the holder's record as JSON (pid, host, run_id, command, started_at) while held and is empty after
    a clean release.
    """

    def __init__(self, workspace: Path, fd: int, record: dict[str, Any]) -> None:
        self.workspace = workspace
        self.record = record
        self._fd: int | None = fd

    @staticmethod
    def path(workspace: Path) -> Path:
        """The lock file of ``workspace``."""
        return Path(workspace) / LOCK_FILENAME

    @classmethod
    def acquire(cls, workspace: Path, run_id: str, command: str) -> WorkspaceLock:
        """Take the workspace's lock for run ``run_id`` started by ``command`` (e.g. "uebench run").

        Creates the workspace folder if needed. Raises UserError, one line: when a live process holds the lock
        (naming its run, command, pid, host and start time), when the folder is not writable, or when the
        filesystem cannot lock. Waits up to :data:`HOUSEKEEPING_WAIT_S` while the lock is only held for a
        read-side command's housekeeping (:func:`open_workspace`).
        """
        workspace = Path(workspace).expanduser().absolute()
        try:
            workspace.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise UserError(
                f"workspace {workspace} cannot be created ({reason}); choose another with --workspace"
            ) from None
        deadline = time.monotonic() + HOUSEKEEPING_WAIT_S
        while True:
            lock = cls._take(workspace, run_id, command, housekeeping=False)
            if lock is not None:
                return lock
            record = _read_record(cls.path(workspace))
            if (record is None or record.get("housekeeping")) and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise UserError(describe_holder(workspace, record))

    @classmethod
    def _take(cls, workspace: Path, run_id: str | None, command: str, housekeeping: bool) -> WorkspaceLock | None:
        """The lock when it is free (written with this process's record); None when another process holds it.

        Raises UserError when the lock file cannot be opened or the filesystem does not support ``flock``.
        """
        path = cls.path(workspace)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise UserError(f"cannot open the lock file {path} ({reason}); choose another --workspace") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            reason = exc.strerror or type(exc).__name__
            raise UserError(
                f"cannot lock workspace {workspace} ({reason}): its filesystem does not support file locks; "
                "use a local disk or NFSv4"
            ) from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "run_id": run_id,
            "command": command,
            "started_at": _utc_now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if housekeeping:
            record["housekeeping"] = True
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"), 0)
        except OSError as exc:
            os.close(fd)  # closing drops the lock
            reason = exc.strerror or type(exc).__name__
            raise UserError(f"cannot write the lock file {path} ({reason}); choose another --workspace") from None
        return cls(workspace, fd, record)

    @classmethod
    def holder(cls, workspace: Path) -> dict[str, Any] | None:
        """The record of the process holding the workspace now (pid, host, run_id, command, started_at), or
        None when the lock is free. Never takes the lock.

        Reads the lock file: empty (released cleanly) or missing means free, and a holder on this host whose
        pid is gone (killed) is not a holder. A holder on another host cannot be checked without taking the
        lock, so its record is returned as is; :meth:`acquire` is the authority. While a read-side command tidies
        the workspace (:func:`open_workspace`) the record has ``housekeeping: true`` and ``run_id`` None.
        """
        record = _read_record(cls.path(workspace))
        if record is None:
            return None
        if record.get("host") == socket.gethostname():
            try:
                pid = int(record["pid"])
            except (TypeError, ValueError):
                return None
            if not _pid_alive(pid):
                return None
        return record

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Empty the lock file and free the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> WorkspaceLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


def mark_interrupted_runs(db_path: Path, by: str) -> int:
    """Mark every ``runs`` row still ``running`` as ``interrupted``; returns how many were marked.

    A row stays ``running`` only when its driver stopped before finishing (killed, machine lost), so call this
    only while holding the workspace lock or after checking it is free — never while a run holds it. The
    marked rows get ``finished_at`` = now (UTC) and the error "the driver stopped before the run finished;
    found by `<by>`". Returns 0 without touching anything when ``db_path`` does not exist; the database is
    opened writable only when there is a row to mark. Raises StoreError when it cannot be opened.
    """
    import polars as pl

    from results.store import Store, StoreError

    db_path = Path(db_path)
    if not db_path.is_file():
        return 0
    try:
        with Store.open(db_path, read_only=True, samples=False) as store:
            if "runs" not in store.tables():
                return 0
            running = store.query("SELECT count(*) AS n FROM runs WHERE status = 'running'")["n"][0]
        if not running:
            return 0
    except StoreError:
        pass  # e.g. an older schema, which the writable open below migrates
    with Store.open(db_path, samples=False) as store:
        rows = store.query("SELECT * FROM runs WHERE status = 'running'")
        if rows.height == 0:
            return 0
        finished = _utc_now().replace(tzinfo=None)
        marked = rows.with_columns(
            status=pl.lit("interrupted"),
            finished_at=pl.lit(finished, dtype=pl.Datetime("us")),
            error=pl.lit(f"the driver stopped before the run finished; found by `{by}`"),
        )
        return store.ingest("runs", marked)


def _stale(path: Path, now: float, min_age_s: float) -> bool:
    try:
        return now - path.lstat().st_mtime >= min_age_s
    except OSError:
        return False


def _remove(path: Path) -> bool:
    """Delete a file or folder tree; whether it is gone."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:  # gone already, or not ours to delete
        return False
    return True


def remove_stale_temp(workspace: Path, min_age_s: float = STALE_AFTER_S) -> int:
    """Delete temporary files that dead runs and commands left in ``workspace``; returns how many were deleted.

    What counts: ``.<name>.<token>.tmp`` (and the old decode cache's ``.tmp.npy``) files anywhere under
    ``outputs/``, ``features/``, ``reports/``, ``datasets/``, ``cache/`` and ``cood/``; ``.attempts-*`` folders and
    ``.write-test-*`` files at the workspace top; the demo's ``data/.staging-*`` folders and
    ``data/recipe.tmp``. Only entries untouched for ``min_age_s`` seconds go, so a read-side command writing
    its output right now keeps its file. Call it only while holding the workspace lock (or with it free): a
    live run's temporary files look the same. Entries that cannot be deleted are left; never raises for them.
    """
    workspace = Path(workspace)
    now = time.time()
    candidates: list[Path] = []
    for pattern in _TOP_PATTERNS:
        candidates.extend(workspace.glob(pattern))
    for pattern in _DATA_PATTERNS:
        candidates.extend((workspace / "data").glob(pattern))
    for folder in _TEMP_FOLDERS:
        for directory, _dirs, names in os.walk(workspace / folder):
            candidates.extend(Path(directory) / name for name in names if _TEMP_FILE.match(name))
    return sum(_remove(path) for path in sorted(set(candidates)) if _stale(path, now, min_age_s))


def open_workspace(workspace: Path, command: str) -> int:
    """Housekeeping before a read-side command (``sql``, ``report``, ``cood build``, ``hsc calibrate``) reads
    ``workspace``; returns the number of runs marked ``interrupted``.

    When no live process holds the workspace lock: take it briefly, mark ``running`` runs interrupted
    (:func:`mark_interrupted_runs`), delete stale temporary files (:func:`remove_stale_temp`) and release it.
    When a live run holds it, or the workspace is missing or read-only, or the database is busy: do nothing and
    return 0, so reading works during a run and on read-only copies. Never raises for housekeeping problems.
    """
    from results.store import StoreError, database_path

    workspace = Path(workspace).expanduser().absolute()
    if not workspace.is_dir():
        return 0
    try:
        lock = WorkspaceLock._take(workspace, None, command, housekeeping=True)
    except UserError:
        return 0  # read-only workspace or no locks: nothing can be cleaned safely
    if lock is None:
        return 0
    with lock:
        try:
            marked = mark_interrupted_runs(database_path(workspace), by=command)
        except (StoreError, OSError):
            marked = 0  # busy (another writer) or unreadable: the next command tries again
        with contextlib.suppress(OSError):
            remove_stale_temp(workspace)
    return marked


def interrupted_note(count: int) -> str:
    """The one-line note a CLI command prints after :func:`open_workspace` marked ``count`` runs."""
    runs = "1 run" if count == 1 else f"{count} runs"
    return f"note: marked {runs} interrupted (the driver stopped before finishing; see the runs table)"
