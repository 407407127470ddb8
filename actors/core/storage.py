"""Where a run's output lives: a local directory or an object-store prefix behind one interface.

`open_store` resolves the output root with `pyarrow.fs.FileSystem.from_uri` (plain local paths
included), so the writer's commit protocol is one code path for every backend. The two stores differ
only in primitives the backends do not share:

- `LocalStore` (local disk, ``file://``): real ``fsync`` of files and directories, part renames
  that can never overwrite (``link`` then ``unlink``), and in-place appends with truncation.
- `ArrowStore` (``s3://``, ``gs://``, any other pyarrow filesystem): one object is written by one
  atomic put, so "fsync" is the put itself; there is no append, so appended files are replaced
  whole (``supports_append`` is False and callers rewrite instead).

Every method takes paths relative to the root, with ``/`` separators. Failures surface as `OSError`;
the writer turns them into `OutputError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.fs as pafs

Buffer = bytes | bytearray | memoryview | pa.Buffer
Chunks = Buffer | Iterable[Buffer]


class OutputError(RuntimeError):
    """The output location cannot be written (unwritable, full, or inconsistent).

    The message names the path and the cause; nothing already committed has been changed.
    """

    def __init__(self, path: str, cause: BaseException | str) -> None:
        if isinstance(cause, OSError) and cause.errno is not None:
            reason = f"{errno.errorcode.get(cause.errno, cause.errno)}: {cause.strerror or cause}"
        else:
            reason = str(cause)
        super().__init__(f"cannot write output at {path}: {reason}")
        self.path = path  # the file or directory that could not be written
        self.reason = reason  # e.g. "ENOSPC: No space left on device"

    def __reduce__(self) -> tuple[type[OutputError], tuple[str, str]]:
        return OutputError, (self.path, self.reason)  # picklable, so it crosses Ray intact


def temp_name(rel: str) -> str:
    """A unique temporary sibling of `rel`: ``dir/.name.tmp-<random>`` (hidden, so globs skip it)."""
    head, _, name = rel.rpartition("/")
    tmp = f".{name}.tmp-{secrets.token_hex(4)}"
    return f"{head}/{tmp}" if head else tmp


def is_temp_name(name: str) -> bool:
    """True for names made by `temp_name` (left behind only by an interrupted write)."""
    return name.startswith(".") and ".tmp-" in name


class Store:
    """Interface of an output location (see the module docstring)."""

    filesystem: pafs.FileSystem
    root: str  # root path inside `filesystem`
    uri: str  # how to name the root to a human
    supports_append: bool = False

    def path(self, rel: str) -> str:
        """The filesystem path of `rel` (for pyarrow readers)."""
        return f"{self.root.rstrip('/')}/{rel}" if rel else self.root

    def display(self, rel: str = "") -> str:
        """`rel` as the user would name it (URI or local path)."""
        return f"{self.uri.rstrip('/')}/{rel}" if rel else self.uri

    def makedirs(self, rel: str) -> None:
        self.filesystem.create_dir(self.path(rel), recursive=True)

    def listdir(self, rel: str) -> list[str]:
        """Names of plain files directly under `rel` (empty if it does not exist)."""
        selector = pafs.FileSelector(self.path(rel), allow_not_found=True, recursive=False)
        infos = self.filesystem.get_file_info(selector)
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)

    def size(self, rel: str) -> int | None:
        """Size in bytes, or None when `rel` does not exist."""
        info = self.filesystem.get_file_info(self.path(rel))
        return info.size if info.type == pafs.FileType.File else None

    def read(self, rel: str) -> bytes:
        with self.filesystem.open_input_stream(self.path(rel)) as stream:
            return stream.read()

    def write(self, rel: str, data: Chunks) -> None:
        """Creates or replaces `rel` with `data` (bytes or an iterable of byte chunks); not yet
        durable (see `sync`)."""
        with self.filesystem.open_output_stream(self.path(rel)) as stream:
            for chunk in _chunks(data):
                stream.write(chunk)

    def sync(self, rel: str) -> None:
        """Makes `rel`'s content durable."""

    def sync_dir(self, rel: str) -> None:
        """Makes the names in directory `rel` durable."""

    def rename_noreplace(self, src: str, dst: str) -> None:
        """Renames `src` to `dst`; raises FileExistsError instead of replacing `dst`."""
        if self.size(dst) is not None:
            raise FileExistsError(errno.EEXIST, "refusing to overwrite", self.display(dst))
        self.filesystem.move(self.path(src), self.path(dst))

    def replace(self, src: str, dst: str) -> None:
        """Renames `src` over `dst` (the replacement is atomic where the backend allows)."""
        self.filesystem.move(self.path(src), self.path(dst))

    def delete(self, rel: str) -> None:
        self.filesystem.delete_file(self.path(rel))

    def write_atomic(self, rel: str, data: Chunks) -> None:
        """Writes `rel` under a temporary name, makes it durable, then renames it into place, so a
        reader sees the old content or the new, never part of it; the temporary file is removed
        when the write fails (a full disk must not leave half-written files behind)."""
        head = rel.rpartition("/")[0]
        if head:
            self.makedirs(head)
        tmp = temp_name(rel)
        try:
            self.write(tmp, data)
            self.sync(tmp)
            self.replace(tmp, rel)
        except BaseException:
            with contextlib.suppress(OSError):  # it may never have been created
                self.delete(tmp)
            raise
        self.sync_dir(head)

    def append(self, rel: str, data: bytes, expected_size: int) -> None:
        """Appends `data` durably at offset `expected_size` (dropping any torn tail past it).
        Only where `supports_append`."""
        raise NotImplementedError("this store has no append; rewrite the file instead")

    def truncate(self, rel: str, size: int) -> None:
        """Cuts `rel` back to `size` bytes, durably. Only where `supports_append`."""
        raise NotImplementedError("this store has no truncate; rewrite the file instead")


class ArrowStore(Store):
    """Any pyarrow filesystem; object stores put each object atomically, so sync is a no-op."""

    def __init__(self, filesystem: pafs.FileSystem, root: str, uri: str) -> None:
        self.filesystem, self.root, self.uri = filesystem, root.rstrip("/") or "/", uri


class LocalStore(Store):
    """A local directory, with real fsync, non-replacing renames and in-place appends."""

    supports_append = True

    def __init__(self, root: str, uri: str) -> None:
        self.filesystem = pafs.LocalFileSystem()
        self.root, self.uri = os.path.abspath(root), uri

    def makedirs(self, rel: str) -> None:
        os.makedirs(self.path(rel), exist_ok=True)

    def write(self, rel: str, data: Chunks) -> None:
        fd = os.open(self.path(rel), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for chunk in _chunks(data):
                _write_all(fd, chunk)
        finally:
            os.close(fd)

    def sync(self, rel: str) -> None:
        fd = os.open(self.path(rel), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync_dir(self, rel: str) -> None:
        self.sync(rel)  # fsync on a directory descriptor makes its entries durable

    def rename_noreplace(self, src: str, dst: str) -> None:
        try:
            os.link(self.path(src), self.path(dst))  # fails with EEXIST rather than replacing
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            super().rename_noreplace(src, dst)  # no hard links here: check, then rename
            return
        os.unlink(self.path(src))

    def replace(self, src: str, dst: str) -> None:
        os.replace(self.path(src), self.path(dst))

    def delete(self, rel: str) -> None:
        os.unlink(self.path(rel))

    def append(self, rel: str, data: bytes, expected_size: int) -> None:
        fd = os.open(self.path(rel), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size < expected_size:
                raise OSError(errno.EIO, f"file shrank to {size} bytes, expected {expected_size}")
            if size > expected_size:  # a torn tail from an append that failed earlier
                os.ftruncate(fd, expected_size)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def truncate(self, rel: str, size: int) -> None:
        os.truncate(self.path(rel), size)
        self.sync(rel)


def _chunks(data: Chunks) -> Iterable[Buffer]:
    return [data] if isinstance(data, Buffer) else data


def _write_all(fd: int, data: Buffer) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def open_store(root: str, filesystem: pafs.FileSystem | None = None) -> Store:
    """Resolves an output root (local path, ``file://``, ``s3://``, ``gs://``, ...) to a store.

    Args:
        root: where the output lives; relative local paths are made absolute.
        filesystem: use this filesystem with `root` as a path inside it instead of resolving a URI
            (tests pass e.g. an fsspec memory filesystem to exercise the object-store path).

    Raises:
        OutputError: the URI names no filesystem pyarrow can open.
    """
    if filesystem is not None:
        if isinstance(filesystem, pafs.LocalFileSystem):
            return LocalStore(root, root)
        return ArrowStore(filesystem, root, f"{filesystem.type_name}:{root}")
    uri = root if "://" in root else os.path.abspath(root)
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError, NotImplementedError, pa.ArrowException) as exc:
        raise OutputError(root, exc) from exc
    if isinstance(fs, pafs.LocalFileSystem):
        return LocalStore(path, root)
    return ArrowStore(fs, path, root)
