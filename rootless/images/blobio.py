"""Streaming readers for a layer blob: verify, keep, decompress, hash.

A layer flows through three readers, one pass, bounded memory:

    source ─► BlobTee (sha256 of the blob, copy to the blob file, progress)
           ─► Decompressed (gzip/zstd/none, sniffed from the first bytes)
           ─► Hashing (sha256 of the tar stream = the diff-id) ─► unpack

Rules: a blob longer than its descriptor's size is refused as it streams
(a hostile registry cannot feed an endless body); decompression output per
read is bounded (a zip bomb cannot fill
memory; it fills the disk and stops with ENOSPC in the caller's temp dir);
multi-member gzip and multi-frame zstd streams are read to the end;
``drain`` reads what the tar reader left (padding) so both digests cover
the whole stream.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from typing import BinaryIO

CHUNK = 1 << 20


class CorruptBlob(ValueError):
    """The data does not match its digest or does not decompress."""


class BlobTee:
    """Read ``source``; hash it, copy it to ``sink`` (may be None) and
    report the byte count to ``progress``."""

    def __init__(self, source: BinaryIO, sink: BinaryIO | None,
                 progress: Callable[[int], None] | None = None, limit: int = -1) -> None:
        self.source, self.sink, self.progress = source, sink, progress
        self.limit = limit          # the size the manifest declares (-1: unknown)
        self.hash = hashlib.sha256()
        self.size = 0
        self._head = b""

    def read(self, n: int = CHUNK) -> bytes:
        n = n if n > 0 else CHUNK
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
        else:
            data = self.source.read(n)
        if data:
            self.hash.update(data)
            self.size += len(data)
            if 0 <= self.limit < self.size:
                raise CorruptBlob(f"blob is larger than the {self.limit} bytes its "
                                  f"descriptor declares")
            if self.sink is not None:
                self.sink.write(data)
            if self.progress is not None:
                self.progress(len(data))
        return data

    def peek(self) -> bytes:
        """The first bytes, without consuming them (compression sniffing)."""
        if not self._head:
            self._head = self.source.read(CHUNK)
        return self._head

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class Decompressed:
    """Decompress gzip (RFC 1952, several members), zstd or nothing."""

    def __init__(self, raw: BlobTee) -> None:
        head = raw.peek()
        self.raw = raw
        self.kind = "gzip" if head[:2] == b"\x1f\x8b" else \
            "zstd" if head[:4] == b"\x28\xb5\x2f\xfd" else None
        if self.kind == "gzip":
            self._z = zlib.decompressobj(31)
            self._pending = b""
        elif self.kind == "zstd":
            import zstandard

            self._zreader = zstandard.ZstdDecompressor().stream_reader(
                raw, read_size=CHUNK, read_across_frames=True, closefd=False)

    def read(self, n: int = CHUNK) -> bytes:
        """Up to ``n`` bytes; fewer only at the end (tarfile's copy needs that)."""
        n = n if n > 0 else CHUNK
        first = self._read(n)
        if len(first) == n or not first:
            return first
        parts = [first]
        got = len(first)
        while got < n:
            more = self._read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    def _read(self, n: int) -> bytes:
        try:
            if self.kind is None:
                return self.raw.read(n)
            if self.kind == "zstd":
                return self._zreader.read(n)
            return self._gzip(n)
        except (zlib.error, ValueError) as exc:
            if isinstance(exc, CorruptBlob):
                raise
            raise CorruptBlob(f"cannot decompress {self.kind} data: {exc}") from exc

    def _gzip(self, n: int) -> bytes:
        while True:
            if self._z.eof:
                rest = self._z.unused_data + self._pending
                self._pending = b""
                if not rest:
                    rest = self.raw.read(CHUNK)
                if not rest.strip(b"\0"):
                    # The end, or zero padding after the last member.
                    while more := self.raw.read(CHUNK):
                        if more.strip(b"\0"):
                            raise CorruptBlob("unexpected data after the gzip stream")
                    return b""
                self._z = zlib.decompressobj(31)  # another gzip member
                self._pending = rest
            if not self._pending:
                self._pending = self.raw.read(CHUNK)
                if not self._pending:
                    raise CorruptBlob("gzip stream ends early")
            out = self._z.decompress(self._pending, n)
            self._pending = self._z.unconsumed_tail
            if out:
                return out


class Hashing:
    """Hash everything read through it (the diff-id of a layer)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = CHUNK) -> bytes:
        data = self.inner.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()
