"""Shard writing for `pdfgc prepare`: clips appended to ``shard-NNNNNN.tar.tmp``, renamed when complete."""
from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import time
from pathlib import Path

from .clip import ClipResult, Segment


def json_dump(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n"


class ShardWriter:
    """Appends clips to ``shard-NNNNNN.tar.tmp``; ``close`` completes the tar and renames it."""

    def __init__(self, out: Path, index: int):
        self.name = f"shard-{index:06d}.tar"
        self.path = out / self.name
        self.tmp = out / (self.name + ".tmp")
        self._file = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)
        self.opened = time.monotonic()
        self.clips = 0

    @property
    def size(self) -> int:
        return self._tar.offset

    def add(self, segment: Segment) -> dict[str, list[int]]:
        """Write one clip's members; returns suffix -> [data offset, size]."""
        members = {}
        for suffix, data in segment.members.items():
            info = tarfile.TarInfo(f"{segment.key}.{suffix}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            # the data starts right after the header blocks tarfile is about to write
            header = info.tobuf(self._tar.format, self._tar.encoding, self._tar.errors)
            members[suffix] = [self._tar.offset + len(header), len(data)]
            self._tar.addfile(info, io.BytesIO(data))
        self.clips += 1
        return members

    def close(self) -> None:
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._tar.close()
            self._file.close()
        self.tmp.unlink(missing_ok=True)


def completion_record(result: ClipResult, shard: str | None, offsets: dict[str, dict]) -> dict:
    segs = []
    for seg in result.segments:
        segs.append(dict(seg.info, shard=shard, members=offsets[seg.key]))
    return {"raw_key": result.raw_key, "source": result.source, "segments": segs, "rejected": result.rejected,
            "frames_read": result.frames_read, "seconds": result.seconds}
