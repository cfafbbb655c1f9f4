"""Whole-file writes and bounded reads on any fsspec filesystem.

Object stores have no atomic rename, so a file is only ever written whole: on a local disk into a
temporary file in the same folder, then ``os.replace``; elsewhere by one ``put`` of a finished
local file (an object appears only when its upload completes). Readers never see half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from mmner_data.lake.layout import LakeError


def open_root(
    root: str, storage_options: dict | None
) -> tuple[fsspec.AbstractFileSystem, str, str]:
    """``(fs, base path for fs calls, root as shown)``; a local path becomes absolute."""
    if not isinstance(root, str) or not root.strip():
        raise LakeError("the lake root is empty; give a folder or an fsspec URL (s3://bucket/x)")
    shown = root.strip()
    if "://" not in shown and not shown.startswith("file:"):
        shown = os.path.abspath(os.path.expanduser(shown))
    try:
        fs, base = url_to_fs(shown, **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise LakeError(f"cannot open the lake root {shown}: {exc}") from None
    shown = shown.rstrip("/") or shown
    return fs, base.rstrip("/") or base, shown


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def list_sizes(fs: fsspec.AbstractFileSystem, folder: str) -> dict[str, int]:
    """The files directly in ``folder`` (name → size); empty when the folder does not exist."""
    try:
        entries = fs.ls(folder, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        raise LakeError(f"cannot list {folder}: {exc}") from None
    return {
        _name(e["name"]): int(e.get("size") or 0)
        for e in entries
        if e.get("type") == "file" and _name(e["name"])
    }


def list_dirs(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    """The sub-folder names of ``folder`` (sorted); empty when it does not exist."""
    try:
        entries = fs.ls(folder, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise LakeError(f"cannot list {folder}: {exc}") from None
    return sorted(_name(e["name"]) for e in entries if e.get("type") == "directory")


def _name(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


@contextlib.contextmanager
def whole_file(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[IO[bytes]]:
    """A binary file to write; ``path`` appears only when the block ends without an error."""
    local = is_local(fs)
    folder = path.rsplit("/", 1)[0]
    try:
        if local:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
        else:
            fd, tmp = tempfile.mkstemp(prefix="mmner-lake-")
    except OSError as exc:
        raise LakeError(f"cannot write in {folder}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; a lake is for sharing
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if local:
                os.fsync(fh.fileno())
        try:
            if local:
                os.replace(tmp, path)
            else:
                fs.put_file(tmp, path)
        except OSError as exc:
            raise LakeError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole (local: temp + rename; remote: one put)."""
    if is_local(fs):
        with whole_file(fs, path) as fh:
            fh.write(data)
        return
    try:
        fs.pipe_file(path, data)
    except OSError as exc:
        raise LakeError(f"cannot write {path}: {exc.strerror or exc}") from None


def read_bytes(fs: fsspec.AbstractFileSystem, path: str, max_bytes: int) -> bytes:
    """The whole file, refusing one larger than ``max_bytes`` before reading it."""
    try:
        size = int(fs.size(path) or 0)
        if size > max_bytes:
            raise LakeError(f"{path} is {size} bytes, more than the {max_bytes} allowed")
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise LakeError(f"{path} does not exist") from None
    except OSError as exc:
        raise LakeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise LakeError(f"{path} is larger than the {max_bytes} bytes allowed")
    return data


def read_range(fs: fsspec.AbstractFileSystem, path: str, offset: int, size: int) -> bytes:
    try:
        data = fs.cat_file(path, start=offset, end=offset + size)
    except FileNotFoundError:
        raise LakeError(f"{path} does not exist") from None
    except OSError as exc:
        raise LakeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) != size:
        raise LakeError(f"{path}: {size} bytes at offset {offset} run past the end of the file")
    return data


def remove(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    """Delete ``path`` if it is there; True when something was deleted."""
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise LakeError(f"cannot delete {path}: {exc.strerror or exc}") from None
    return True


@contextlib.contextmanager
def local_copy(fs: fsspec.AbstractFileSystem, path: str, max_bytes: int) -> Iterator[IO[bytes]]:
    """``path`` opened for random access: in place when local, else a downloaded temp copy."""
    try:
        size = int(fs.size(path) or 0)
    except FileNotFoundError:
        raise LakeError(f"{path} does not exist") from None
    except OSError as exc:
        raise LakeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size > max_bytes:
        raise LakeError(f"{path} is {size} bytes, more than the {max_bytes} allowed")
    if is_local(fs):
        with open(path, "rb") as fh:
            yield fh
        return
    with tempfile.TemporaryDirectory(prefix="mmner-lake-") as tmp:
        dest = os.path.join(tmp, "copy")
        try:
            fs.get_file(path, dest)
        except OSError as exc:
            raise LakeError(f"cannot read {path}: {exc.strerror or exc}") from None
        with open(dest, "rb") as fh:
            yield fh
