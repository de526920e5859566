"""Datasets kept in containers: per-synset tars, a tar of tars, WebDataset shards, Parquet shards (docs/datasets.md).

The driver indexes every container once — where each image's bytes are, and its label — and caches the index in
the workspace (``<workspace>/datasets/index/<key>.parquet``), keyed by each container's path, size and mtime: a
container whose size or mtime changed is indexed again, the others are read from the cache. Nothing is
extracted; decode workers read each image by offset (:func:`read_samples`).

Formats (``FORMATS``; chosen by :func:`detect_format` from the root's content or given as ``format =``):

- ``folder``: ``<root>/<wnid>/<image>`` files (no index; the listing is the index).
- ``tar``: a folder of per-synset tars ``<root>/<wnid>.tar`` holding that class's images (the ImageNet
  per-synset downloads).
- ``tars``: one tar holding per-synset tars (``fall11_whole.tar``): ``root`` is that file; inner members are
  indexed at offsets relative to the outer file.
- ``wds``: WebDataset shards ``*.tar``: members ``<key>.<ext>`` grouped by key; the image is the member with
  an image extension, the label a ``.cls`` (integer class index), ``.json`` (object with a ``wnid``) or
  ``.txt``/``.wnid`` (the wnid).
- ``parquet``: Parquet shards ``*.parquet`` (the Hugging Face layout): column ``image`` (struct of ``bytes`` and
  ``path``, or binary) and ``label`` (integer class index) or ``wnid`` (string); a row whose ``path`` has no
  image extension is skipped, like a folder's other files.

An index row is ``(name, wnid, cls, start, length)`` per image: ``name`` its file name (the member's base name;
Parquet rows without a path are ``<shard stem>_<row:08d>``), ``wnid`` its class ("" when only ``cls``, an
integer class index, is known; -1 when the wnid is), and its locator ``(start, length)`` within its container:
tar formats the byte offset and size of the member's data, Parquet the row index in the file and -1.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import IMAGE_EXTENSIONS, WNID_PATTERN, atomic_output
from pipelines.data import storage

FORMATS = ("folder", "tar", "tars", "wds", "parquet")
BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
INDEX_VERSION = 1
LABEL_EXTENSIONS = (".cls", ".json", ".txt", ".wnid")


class ArchiveError(ValueError):
    """A container that cannot be indexed (invalid tar header, unreadable Parquet footer, compressed tar): one
    line naming the container; the loaders turn it into a UserError."""


@dataclass(frozen=True)
class Container:
    """One indexed file: ``name`` relative to the dataset root ("" when the root is the file), ``size`` bytes,
    ``mtime_ns`` (0 when the store gives none)."""

    name: str
    size: int
    mtime_ns: int


Row = tuple[str, str, int, int, int]  # (name, wnid, cls, start, length)


@dataclass(frozen=True, eq=False)
class Index:
    """Every image of a dataset's containers. ``containers`` (F,); per image (N,): ``file`` int32 container
    position, ``names``/``wnids`` (str; wnid "" when unknown), ``cls`` int64 (-1 when unknown), ``start`` and
    ``length`` int64 (the locator; module docstring). Rows are in container order, then archive order."""

    containers: tuple[Container, ...]
    file: np.ndarray
    names: tuple[str, ...]
    wnids: tuple[str, ...]
    cls: np.ndarray
    start: np.ndarray
    length: np.ndarray


# -- locating containers -----------------------------------------------------------------------------------------


def split_pattern(root: str) -> tuple[str, str | None]:
    """``(folder, glob)`` when the last component of ``root`` is a glob (``.../validation-*.parquet``), else
    ``(root, None)``."""
    head, _, last = root.rstrip("/").rpartition("/")
    if any(c in last for c in "*?[") and head:
        return head, last
    return root, None


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def detect_format(root: str) -> str:
    """The format of ``root`` from its content: a ``.tar`` file -> ``tars`` when its first member is a tar, else
    ``wds``; a ``.parquet`` file -> ``parquet``; a folder with ``<wnid>/`` sub-folders -> ``folder``, with
    ``<wnid>.tar`` files -> ``tar``, with other ``.tar`` files -> ``wds``, with ``.parquet`` files (at any depth) ->
    ``parquet``. ArchiveError (one line, what was found) otherwise."""
    folder, pattern = split_pattern(root)
    what = storage.kind(folder)
    if what == "missing":
        raise ArchiveError(f"dataset root {root} does not exist")
    if what == "file":
        if folder.endswith(".parquet"):
            return "parquet"
        if folder.endswith(".tar"):
            return "tars" if _first_member_is_tar(folder) else "wds"
        raise ArchiveError(f"dataset root {root} is a file but neither a .tar nor a .parquet file")
    entries = [e for e in storage.list_dir(folder) if pattern is None or fnmatch.fnmatch(e.name, pattern)]
    if any(e.is_dir and WNID_PATTERN.fullmatch(e.name) for e in entries):
        return "folder"
    tars = [e.name for e in entries if not e.is_dir and e.name.endswith(".tar")]
    if tars:
        return "tar" if any(WNID_PATTERN.fullmatch(n[:-4]) for n in tars) else "wds"
    if any(not e.is_dir and e.name.endswith(".parquet") for e in entries) or (
        pattern is None and any(e.name.endswith(".parquet") for e in storage.list_files_recursive(folder))
    ):
        return "parquet"
    compressed = [e.name for e in entries if e.name.endswith((".tar.gz", ".tgz", ".tar.zst", ".tar.bz2"))]
    if compressed:
        raise ArchiveError(f"{root} holds compressed tars ({compressed[0]}): random access needs plain .tar files "
                           "(decompress them, e.g. `gunzip -k`)")
    raise ArchiveError(
        f"{root} holds neither <wnid>/ folders, <wnid>.tar files, WebDataset .tar shards nor .parquet shards "
        f"({len(entries)} entries)"
    )


def _first_member_is_tar(path: str) -> bool:
    with storage.open_input(path) as handle:
        for name, _, _ in tar_members(_Reader(handle, storage.is_uri(path)), 0, storage.stat(path)[0], path):
            return name.endswith(".tar")
    return False


def list_containers(fmt: str, root: str) -> tuple[str, list[Container]]:
    """``(base, containers)``: the folder (or file) containers are relative to, and the containers of ``root``
    for format ``fmt`` (sorted by name; a glob in ``root``'s last component filters them)."""
    folder, pattern = split_pattern(root)
    if fmt == "tars" or storage.kind(folder) == "file":
        size, mtime = storage.stat(folder)
        return folder, [Container("", size, mtime)]
    if fmt == "tar":
        wanted = [
            e for e in storage.list_dir(folder)
            if not e.is_dir and e.name.endswith(".tar") and WNID_PATTERN.fullmatch(e.name[:-4])
        ]
    else:
        suffix = ".tar" if fmt == "wds" else ".parquet"
        wanted = [e for e in storage.list_files_recursive(folder) if e.name.endswith(suffix)]
    if pattern is not None:
        wanted = [e for e in wanted if fnmatch.fnmatch(e.name.rpartition("/")[2], pattern)]
    return folder, [Container(e.name, e.size, e.mtime_ns) for e in wanted]


# -- tar headers ---------------------------------------------------------------------------------------------------


class _Reader:
    """``read(offset, n) -> bytes`` over a seekable file, served from one cached chunk when it covers the range
    (headers of small members sit close together: one read serves several). Chunks are small (8 KiB locally,
    64 KiB per ranged request to an object store) because the headers of large members (ImageNet's ≈ 110 kB
    JPEGs) are each a read of their own: indexing reads a few percent of an archive, not all of it."""

    def __init__(self, handle, remote: bool):
        self.handle = handle
        self.chunk = (1 << 16) if remote else (1 << 13)
        self.fd = handle.fileno() if not remote and hasattr(handle, "fileno") else None
        self.buf = b""
        self.buf_start = 0

    def _raw(self, offset: int, n: int) -> bytes:
        if self.fd is not None:
            return os.pread(self.fd, n, offset)
        return storage.read_at(self.handle, offset, n)

    def __call__(self, offset: int, n: int) -> bytes:
        rel = offset - self.buf_start
        if 0 <= rel and rel + n <= len(self.buf):
            return self.buf[rel : rel + n]
        if n > self.chunk:
            return self._raw(offset, n)
        self.buf = self._raw(offset, self.chunk)
        self.buf_start = offset
        return self.buf[:n]


def _pax_records(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def tar_members(read: Callable[[int, int], bytes], start: int, end: int, where: str) -> Iterator[tuple[str, int, int]]:
    """``(name, data offset, size)`` of every regular file of the tar occupying bytes ``[start, end)`` of a file,
    in archive order; offsets are absolute in that file. Handles ustar, GNU long names and pax headers.

    Stops at the end-of-archive block or where the file ends (a truncated member is still yielded with its
    header's size: reading it later comes up short and becomes that image's bad_files row). ArchiveError for a
    header that fails its checksum.
    """
    offset = start
    long_name: str | None = None
    pax: dict[str, str] = {}
    while offset + BLOCK <= end:
        buf = read(offset, BLOCK)
        if len(buf) < BLOCK or buf == _ZERO_BLOCK:
            return
        try:
            info = tarfile.TarInfo.frombuf(buf, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise ArchiveError(f"{where}: invalid tar header at byte {offset} ({exc})") from None
        data = offset + BLOCK
        size = info.size
        if info.type == tarfile.GNUTYPE_LONGNAME:
            long_name = read(data, size).rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif info.type == tarfile.XHDTYPE:
            pax = _pax_records(read(data, size))
        elif info.type != tarfile.XGLTYPE:
            name = long_name or pax.get("path") or info.name
            if "size" in pax:
                size = int(pax["size"])
            if info.isreg():
                yield name, data, size
            long_name, pax = None, {}
        offset = data + (size + BLOCK - 1) // BLOCK * BLOCK


# -- per-format scanners -----------------------------------------------------------------------------------------


def _base(name: str) -> str:
    return name.rpartition("/")[2]


def _scan_synset_tar(read, start: int, end: int, wnid: str, where: str) -> list[Row]:
    return [(_base(n), wnid, -1, o, s) for n, o, s in tar_members(read, start, end, where) if _is_image(n)]


def _scan_tar_of_tars(read, size: int, where: str) -> list[Row]:
    rows: list[Row] = []
    for name, offset, length in list(tar_members(read, 0, size, where)):
        stem = _base(name)[:-4] if name.endswith(".tar") else ""
        if WNID_PATTERN.fullmatch(stem):
            rows.extend(_scan_synset_tar(read, offset, min(offset + length, size), stem, f"{where}:{name}"))
    return rows


def _wds_label(ext: str, data: bytes) -> tuple[str, int]:
    """``(wnid, cls)`` from one WebDataset label member ("" / -1 for what it does not give)."""
    text = data.decode("utf-8", "replace").strip()
    if ext == ".cls":
        return "", int(text) if text.lstrip("-").isdigit() else -2
    if ext == ".json":
        try:
            value = json.loads(text)
        except ValueError:
            return "", -1
        if isinstance(value, dict):
            for key in ("wnid", "synset", "class_wnid"):
                if isinstance(value.get(key), str):
                    return value[key], -1
            if isinstance(value.get("label"), int) and not isinstance(value.get("label"), bool):
                return "", int(value["label"])
        return "", -1
    return text, -1


def _scan_wds(read, size: int, where: str) -> list[Row]:
    """One WebDataset shard: a sample is the consecutive members sharing a key (the path up to the first dot of
    its base name); a sample without an image member is skipped."""
    rows: list[Row] = []
    current: str | None = None
    image: tuple[str, int, int] | None = None
    wnid, cls = "", -1

    def flush() -> None:
        if current is not None and image is not None:
            rows.append((image[0], wnid, cls, image[1], image[2]))

    for name, offset, length in tar_members(read, 0, size, where):
        folder, _, base = name.rpartition("/")
        stem, dot, rest = base.partition(".")
        key, ext = f"{folder}/{stem}" if folder else stem, f".{rest.lower()}" if dot else ""
        if key != current:
            flush()
            current, image, wnid, cls = key, None, "", -1
        if ext in IMAGE_EXTENSIONS:
            image = (f"{stem}.{rest}", offset, length)
        elif ext in LABEL_EXTENSIONS and length <= 1 << 16:
            w, c = _wds_label(ext, read(offset, length))
            wnid, cls = w or wnid, c if c != -1 else cls
    flush()
    return rows


def parquet_columns(schema) -> tuple[str, bool, str]:
    """``(label column, image has a path field, label kind "cls" | "wnid")`` of a Parquet shard's arrow schema;
    ArchiveError when it lacks an ``image`` column or a ``label``/``wnid`` column."""
    import pyarrow as pa

    names = schema.names
    if "image" not in names:
        raise ArchiveError(f"has no 'image' column (columns: {', '.join(names)})")
    image = schema.field("image").type
    has_path = pa.types.is_struct(image) and image.get_field_index("path") >= 0
    if pa.types.is_struct(image) and image.get_field_index("bytes") < 0:
        raise ArchiveError("'image' column is a struct without a 'bytes' field")
    if "wnid" in names:
        return "wnid", has_path, "wnid"
    if "label" in names and pa.types.is_integer(schema.field("label").type):
        return "label", has_path, "cls"
    raise ArchiveError(f"has neither an integer 'label' nor a 'wnid' column (columns: {', '.join(names)})")


def _scan_parquet(handle, name: str, where: str) -> list[Row]:
    import pyarrow.parquet as pq

    try:
        shard = pq.ParquetFile(handle)
        label, has_path, kind = parquet_columns(shard.schema_arrow)
        table = shard.read(columns=[label, *(["image.path"] if has_path else [])])
    except ArchiveError as exc:
        raise ArchiveError(f"Parquet shard {where} {exc}") from None
    except Exception as exc:
        raise ArchiveError(f"cannot read Parquet shard {where}: {' '.join(str(exc).split())}") from None
    labels = table.column(label).to_pylist()
    paths = table.column("image").combine_chunks().field("path").to_pylist() if has_path else [None] * len(labels)
    stem = _base(name).rsplit(".", 1)[0] or "rows"
    rows: list[Row] = []
    for row, (value, path) in enumerate(zip(labels, paths, strict=True)):
        if path and not _is_image(path):
            continue  # a row whose path names no image, as a folder's non-image files
        file_name = _base(path) if path else f"{stem}_{row:08d}"
        if kind == "wnid":
            rows.append((file_name, value or "", -1, row, -1))
        else:
            rows.append((file_name, "", -2 if value is None else int(value), row, -1))
    return rows


def scan_container(fmt: str, location: str, container: Container) -> list[Row]:
    """Index one container (``location`` is its full path or URI)."""
    if fmt == "parquet":
        with storage.open_input(location) as handle:
            return _scan_parquet(handle, container.name or location, location)
    if location.endswith((".tar.gz", ".tgz")):
        raise ArchiveError(f"{location} is compressed: random access needs a plain .tar (decompress it first)")
    with storage.open_input(location) as handle:
        read = _Reader(handle, storage.is_uri(location))
        if fmt == "tar":
            return _scan_synset_tar(read, 0, container.size, _base(container.name)[:-4], location)
        if fmt == "tars":
            return _scan_tar_of_tars(read, container.size, location)
        return _scan_wds(read, container.size, location)


# -- the cached index --------------------------------------------------------------------------------------------


def index_path(workspace: Path, fmt: str, root: str) -> Path:
    """Where the index of ``root`` read as ``fmt`` is cached: ``<workspace>/datasets/index/<sha256[:20]>.parquet``."""
    key = hashlib.sha256(f"{INDEX_VERSION}\n{fmt}\n{root}".encode()).hexdigest()[:20]
    return Path(workspace) / "datasets" / "index" / f"{key}.parquet"


def _read_cache(path: Path | None) -> dict[tuple[str, int, int], list[Row]]:
    if path is None or not path.is_file():
        return {}
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path).to_pydict()
    except Exception:  # a damaged cache is rebuilt, never trusted
        return {}
    cached: dict[tuple[str, int, int], list[Row]] = {}
    columns = ("container", "container_size", "container_mtime_ns", "name", "wnid", "cls", "start", "length")
    for c, size, mtime, name, wnid, cls, start, length in zip(*(table[k] for k in columns), strict=True):
        rows = cached.setdefault((c, size, mtime), [])
        if start >= 0:
            rows.append((name, wnid, cls, start, length))
    return cached


def _write_cache(path: Path, containers: list[Container], scanned: list[list[Row]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list] = {k: [] for k in (
        "container", "container_size", "container_mtime_ns", "name", "wnid", "cls", "start", "length"
    )}
    for c, rows in zip(containers, scanned, strict=True):
        for row in rows or [("", "", -1, -1, -1)]:  # an empty container is cached too (start -1)
            for key, value in zip(("container", "container_size", "container_mtime_ns"), (c.name, c.size, c.mtime_ns),
                                  strict=True):
                columns[key].append(value)
            for key, value in zip(("name", "wnid", "cls", "start", "length"), row, strict=True):
                columns[key].append(value)
    table = pa.table({
        k: pa.array(v, type=pa.string() if k in ("container", "name", "wnid") else pa.int64())
        for k, v in columns.items()
    })
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


@dataclass(frozen=True)
class IndexStats:
    """What :func:`build_index` did: containers ``indexed`` now and ``cached`` (read from the workspace)."""

    indexed: int
    cached: int


def build_index(fmt: str, root: str, cache: Path | None = None) -> tuple[str, Index, IndexStats]:
    """``(base, index, stats)`` of every container of ``root`` in format ``fmt`` (not ``folder``); containers
    whose (path, size, mtime) match ``cache`` are read from it, the others scanned, and the cache rewritten
    when anything was scanned. ArchiveError (one line) for a container that cannot be indexed."""
    base, containers = list_containers(fmt, root)
    cached = _read_cache(cache)
    scanned: list[list[Row] | None] = [cached.get((c.name, c.size, c.mtime_ns)) for c in containers]
    missing = [i for i, rows in enumerate(scanned) if rows is None]

    def scan(i: int) -> list[Row]:
        return scan_container(fmt, storage.join(base, containers[i].name), containers[i])

    if storage.is_uri(base) and len(missing) > 1:  # object stores: latency-bound, so in parallel
        with ThreadPoolExecutor(max_workers=16) as pool:
            for i, rows in zip(missing, pool.map(scan, missing), strict=True):
                scanned[i] = rows
    else:
        for i in missing:
            scanned[i] = scan(i)
    if cache is not None and (missing or len(cached) != len(containers)):
        _write_cache(cache, containers, scanned)
    file, names, wnids, cls, start, length = [], [], [], [], [], []
    for f, rows in enumerate(scanned):
        for name, wnid, c, s, n in rows or ():
            file.append(f)
            names.append(name)
            wnids.append(wnid)
            cls.append(c)
            start.append(s)
            length.append(n)
    index = Index(
        tuple(containers), np.asarray(file, np.int32), tuple(names), tuple(wnids), np.asarray(cls, np.int64),
        np.asarray(start, np.int64), np.asarray(length, np.int64),
    )
    return base, index, IndexStats(len(missing), len(containers) - len(missing))


# -- reading samples (decode workers) ----------------------------------------------------------------------------


def _parquet_rows(handle, rows: list[int]) -> dict[int, bytes | str]:
    """Image bytes of ``rows`` (row indices in the file) of one Parquet shard, each row group read once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = pq.ParquetFile(handle)
    image = shard.schema_arrow.field("image").type
    column = "image.bytes" if pa.types.is_struct(image) else "image"
    bounds = np.cumsum([0] + [shard.metadata.row_group(g).num_rows for g in range(shard.metadata.num_row_groups)])
    out: dict[int, bytes | str] = {}
    groups: dict[int, list[int]] = {}
    for row in rows:
        g = int(np.searchsorted(bounds, row, side="right")) - 1
        if not 0 <= g < len(bounds) - 1:
            out[row] = f"cannot read: row {row} is outside the shard ({bounds[-1]} rows)"
        else:
            groups.setdefault(g, []).append(row)
    for g, members in groups.items():
        try:
            values = shard.read_row_group(g, columns=[column]).column(0).combine_chunks()
            if pa.types.is_struct(values.type):
                values = values.field("bytes")
        except Exception as exc:
            for row in members:
                out[row] = f"cannot read: row group {g}: {' '.join(str(exc).split())}"
            continue
        for row in members:
            value = values[row - int(bounds[g])].as_py()
            out[row] = value if value is not None else "cannot read: the image is null"
    return out


def read_samples(fmt: str, files: list[str], starts: np.ndarray, lengths: np.ndarray) -> list[bytes | str]:
    """The bytes of each sample ``(files[i], starts[i], lengths[i])`` (a locator; module docstring), or a one-line
    ``cannot read: ...`` reason for that sample. Each container is opened once; tar members are read by offset,
    Parquet rows by row group."""
    out: list[bytes | str] = [""] * len(files)
    by_file: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        by_file.setdefault(f, []).append(i)
    for location, positions in by_file.items():
        try:
            handle = storage.open_input(location)
        except Exception as exc:
            for i in positions:
                out[i] = f"cannot read: {' '.join(str(exc).split())}"
            continue
        with handle:
            if fmt == "parquet":
                try:
                    got = _parquet_rows(handle, [int(starts[i]) for i in positions])
                except Exception as exc:
                    got = {int(starts[i]): f"cannot read: {' '.join(str(exc).split())}" for i in positions}
                for i in positions:
                    out[i] = got[int(starts[i])]
                continue
            for i in positions:
                start, length = int(starts[i]), int(lengths[i])
                try:
                    data = handle.read() if length < 0 else storage.read_at(handle, start, length)
                except Exception as exc:
                    out[i] = f"cannot read: {' '.join(str(exc).split())}"
                    continue
                if length >= 0 and len(data) < length:
                    out[i] = f"cannot read: truncated archive member ({len(data)} of {length} bytes)"
                else:
                    out[i] = data
    return out
