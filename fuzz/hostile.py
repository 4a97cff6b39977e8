"""Small, spec-valid (or nearly valid) KMQ files built to cost a careless decoder gigabytes or
minutes: each has every checksum right, so the decoder's deeper rules are what meet it.

Used by the regression tests (in a subprocess with a memory cap) and by `measure.py`.
"""

from __future__ import annotations

import struct
import zlib

import zstandard

from pil_kmq.format import Header, IndexCoding, StripMethod, bits_for_k, crc32, pack_crc


def _file(width: int, height: int, channels: int, k: int, coding: IndexCoding, stream: bytes, extension: bytes = b"", minor: int = 1) -> bytes:
    header = Header(width, height, channels, k, bits_for_k(k), coding, len(stream), len(extension), version_minor=minor).pack()
    body = header + extension + bytes(k * channels) + stream
    return body + pack_crc(crc32(body))


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=19, write_content_size=True).compress(data)


def _strips(strips: list[bytes], strip_height: int) -> bytes:
    table = struct.pack(">I", strip_height) + b"".join(struct.pack(">QI", len(strip), crc32(strip)) for strip in strips)
    return table + b"".join(strips)


def one_strip_image(width: int = 9459, height: int = 9459, channels: int = 4, k: int = 257) -> bytes:
    """The whole image in one runs_zstd strip of one colour: ~1.5 kB for 89 megapixels."""
    pixels = width * height
    flags = bytearray(b"\xff" * ((pixels + 7) // 8))
    flags[0] = 0x7F  # f[0] = 0: the one literal
    if pixels % 8:
        flags[-1] = (0xFF << (8 - pixels % 8)) & 0xFF
    literal = bytes(1 if k <= 256 else 2)
    coded_flags = _zstd(bytes(flags))
    strip = bytes([StripMethod.RUNS_ZSTD]) + struct.pack(">Q", len(coded_flags)) + coded_flags + _zstd(literal)
    return _file(width, height, channels, k, IndexCoding.STRIPS, _strips([strip], height))


def one_wide_row(width: int = 2**31 - 1, channels: int = 3) -> bytes:
    """k = 1: one row of `width` pixels in 52 bytes."""
    return _file(width, 1, channels, 1, IndexCoding.NONE, b"", minor=0)


def many_tiny_strips(count: int = 70_000, width: int = 8) -> bytes:
    """`count` one-row raw strips (k = 256): the per-strip cost of a decoder, multiplied."""
    strips = [bytes([StripMethod.RAW]) + bytes((row + column) % 256 for column in range(width)) for row in range(count)]
    return _file(width, count, 3, 256, IndexCoding.STRIPS, _strips(strips, 1))


def huge_sizes() -> dict[str, bytes]:
    """Files whose u64/u32 sizes point far past their end (each checksum right)."""
    small = _file(4, 2, 3, 3, IndexCoding.NONE, b"\x90\x60", minor=0)
    files = {}
    header = Header(4, 2, 3, 3, 2, IndexCoding.NONE, 2, extension_length=2**32 - 1, version_minor=2).pack()
    files["extension_length"] = header + small[44:]
    header = Header(4, 2, 3, 3, 2, IndexCoding.STRIPS, 2**63, version_minor=1).pack()
    files["index_stream_length"] = header + bytes(9) + struct.pack(">I", 1) + bytes(40)
    strip = b"\x00\x24"
    table = struct.pack(">I", 2) + struct.pack(">QI", 2**62, crc32(strip))
    files["strip_length"] = _file(4, 2, 3, 3, IndexCoding.STRIPS, table + strip)
    flags_length = struct.pack(">Q", 2**63)
    strip = bytes([StripMethod.RUNS_ZLIB]) + flags_length + zlib.compress(b"\x00")
    files["flags_length"] = _file(4, 2, 3, 3, IndexCoding.STRIPS, _strips([strip], 2))
    return files


def bad_exif_chunk() -> bytes:
    """A 1 x 1 file whose exif chunk is a TIFF header and nothing else."""
    chunk = b"exif" + struct.pack(">I", 4) + b"II*\0"
    return _file(1, 1, 3, 1, IndexCoding.NONE, b"", chunk, minor=2)
