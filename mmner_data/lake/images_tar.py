"""Image shards: a plain tar of members named ``<sha256>.<ext>`` plus an index of their offsets.

Members are written with fixed metadata (mtime 0, mode 0644, no owner) so the same images give the
same tar. Readers never extract by member name: they seek to the index's ``offset`` and read
``size`` bytes, then check the bytes' sha256, so a hostile tar cannot place a file anywhere.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Iterable, Mapping
from typing import IO, Any

from mmner_data.lake.layout import MAX_IMAGE_BYTES, LakeError, image_ext

INDEX_COLUMNS = ("sha256", "member", "offset", "size")
BLOCK = tarfile.BLOCKSIZE
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def write_tar(fh: IO[bytes], images: Iterable[tuple[Mapping[str, Any], bytes]]) -> list[dict]:
    """Write the images (each sha256 once) as a tar to ``fh``; return the index rows in order."""
    index: list[dict] = []
    seen: set[str] = set()
    with tarfile.open(fileobj=fh, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for row, data in images:
            sha = hashlib.sha256(data).hexdigest()
            given = row.get("sha256")
            if given is not None and given != sha:
                raise LakeError(f"image bytes do not match their sha256 {given}")
            if sha in seen:
                continue
            seen.add(sha)
            member = f"{sha}.{image_ext(row.get('format'))}"
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            header = info.tobuf(tar.format, tar.encoding, tar.errors)
            offset = tar.offset + len(header)
            tar.addfile(info, io.BytesIO(data))
            rest = {k: v for k, v in row.items() if k not in INDEX_COLUMNS}
            index.append({"sha256": sha, "member": member, "offset": offset, "size": len(data)})
            index[-1].update(rest)
    return index


def check_index_row(row: Mapping[str, Any], tar_size: int) -> str | None:
    """Why an index row cannot be trusted (None when it can): types, name, bounds."""
    sha, member, offset, size = (row.get(c) for c in INDEX_COLUMNS)
    if not isinstance(sha, str) or not SHA256_HEX.fullmatch(sha):
        return f"sha256 {sha!r} is not 64 lowercase hex digits"
    if member != f"{sha}.{image_ext(row.get('format'))}":
        return f"member {member!r} is not named by its sha256 and format"
    for name, value in (("offset", offset), ("size", size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{name} {value!r} of {sha} is not a non-negative integer"
    assert isinstance(offset, int) and isinstance(size, int)
    if size > MAX_IMAGE_BYTES:
        return f"member {sha} is {size} bytes, more than the {MAX_IMAGE_BYTES} allowed"
    if offset < BLOCK or offset % BLOCK or offset + size > tar_size:
        return f"member {sha} at offset {offset} (+{size}) is outside the tar's data blocks"
    return None


def read_member(fh: IO[bytes], row: Mapping[str, Any], tar_size: int, where: str) -> bytes:
    """The bytes of one index row, checked against its sha256; LakeError naming ``where``."""
    problem = check_index_row(row, tar_size)
    if problem:
        raise LakeError(f"{where}: {problem}")
    fh.seek(int(row["offset"]))
    data = fh.read(int(row["size"]))
    if len(data) != row["size"]:
        raise LakeError(f"{where}: member {row['sha256']} is cut short")
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        raise LakeError(f"{where}: the bytes of member {row['member']} do not match its sha256")
    return data
