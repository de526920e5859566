"""Where dataset bytes live: local paths or object-store URIs (``s3://bucket/prefix``), read by random access.

Local paths go through ``os`` (the fastest listing and ``pread``); URIs through pyarrow's filesystem layer
(``pyarrow.fs.FileSystem.from_uri``), whose S3 client takes credentials, region and endpoint only from the
standard AWS chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and
``~/.aws``, ``AWS_ENDPOINT_URL``, instance metadata). uebench never reads, stores or logs credentials: errors
name the URI and the filesystem's message only.

Both the driver (listing, indexing) and the decode workers (reading sample bytes) use this module; workers open
each container once per block and read each sample by offset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO


def is_uri(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is an object-store URI (``scheme://...``) rather than a local path."""
    return "://" in str(location)


def join(root: str, relative: str) -> str:
    """``root`` joined with a POSIX relative path ("" is ``root`` itself); URIs keep their ``scheme://``."""
    if not relative:
        return root
    return f"{root.rstrip('/')}/{relative}" if is_uri(root) else os.path.join(root, relative)


@lru_cache(maxsize=16)
def _filesystem(scheme_and_host: str):
    import pyarrow.fs as pafs

    fs, _ = pafs.FileSystem.from_uri(scheme_and_host + "/")
    return fs


def filesystem(uri: str):
    """``(pyarrow filesystem, path inside it)`` of a URI; one client per scheme and bucket per process."""
    scheme, _, rest = uri.partition("://")
    host, _, path = rest.partition("/")
    fs = _filesystem(f"{scheme}://{host}")
    return fs, f"{host}/{path}".rstrip("/")


@dataclass(frozen=True)
class Entry:
    """One listed object: ``name`` relative to the listed folder (POSIX), ``size`` bytes, ``mtime_ns``
    (0 when the store gives none), ``is_dir``."""

    name: str
    size: int
    mtime_ns: int
    is_dir: bool


def _file_info_entry(info, base: str) -> Entry:
    mtime = info.mtime_ns if info.mtime_ns is not None else 0
    name = info.path[len(base) :].lstrip("/") if info.path.startswith(base) else info.base_name
    is_dir = info.type.name == "Directory"
    return Entry(name, int(info.size or 0) if not is_dir else 0, int(mtime), is_dir)


def list_dir(location: str) -> list[Entry]:
    """The entries directly inside ``location`` (a folder or prefix), sorted by name; FileNotFoundError when it
    is not a folder."""
    if not is_uri(location):
        out = []
        with os.scandir(location) as entries:
            for e in entries:
                if e.is_dir():
                    out.append(Entry(e.name, 0, 0, True))
                else:
                    st = e.stat()
                    out.append(Entry(e.name, st.st_size, st.st_mtime_ns, False))
        return sorted(out, key=lambda e: e.name)
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False, allow_not_found=True))
    if not infos and fs.get_file_info(path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"{location} is not a folder")
    return sorted((_file_info_entry(i, path) for i in infos), key=lambda e: e.name)


def list_files_recursive(location: str) -> list[Entry]:
    """Every file under ``location`` (names relative to it, POSIX), sorted by name."""
    if not is_uri(location):
        out = []
        for folder, _, files in os.walk(location):
            rel = os.path.relpath(folder, location)
            for name in files:
                st = os.stat(os.path.join(folder, name))
                path = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                out.append(Entry(path, st.st_size, st.st_mtime_ns, False))
        return sorted(out, key=lambda e: e.name)
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sorted((e for e in (_file_info_entry(i, path) for i in infos) if not e.is_dir), key=lambda e: e.name)


def kind(location: str) -> str:
    """``"file"``, ``"dir"`` or ``"missing"``."""
    if not is_uri(location):
        return "dir" if os.path.isdir(location) else "file" if os.path.isfile(location) else "missing"
    import pyarrow.fs as pafs

    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    return {pafs.FileType.File: "file", pafs.FileType.Directory: "dir"}.get(info.type, "missing")


def stat(location: str) -> tuple[int, int]:
    """``(size, mtime_ns)`` of one file (mtime 0 when the store gives none)."""
    if not is_uri(location):
        st = os.stat(location)
        return st.st_size, st.st_mtime_ns
    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type.name != "File":
        raise FileNotFoundError(f"{location} does not exist")
    return int(info.size), int(info.mtime_ns or 0)


def open_input(location: str) -> BinaryIO:
    """A seekable binary reader of one file (the caller closes it)."""
    if not is_uri(location):
        return open(location, "rb")
    fs, path = filesystem(location)
    return fs.open_input_file(path)


def read_at(handle: BinaryIO, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` (fewer at the end of the file)."""
    if hasattr(handle, "read_at"):  # pyarrow's random-access files: one ranged request
        return handle.read_at(size, offset)
    handle.seek(offset)
    return handle.read(size)
