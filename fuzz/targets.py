"""What the fuzzers and the reliability tests run: decode bytes every way a client does, and
mend checksums after a mutation so that the decoder's deeper rules are reached."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageFile

import pil_kmq
from pil_kmq.format import CRC_SIZE, HEADER_SIZE, IndexCoding

# What a decoder may raise: Pillow's conventional exceptions. Anything else is a bug.
ALLOWED = (SyntaxError, OSError, ValueError, EOFError, Image.DecompressionBombError)
MAX_PIXELS = 1 << 22  # fuzzing keeps allocations small: bigger headers must be refused


def fix_checksums(data: bytearray) -> None:
    """Recompute header_crc, the strip CRCs and file_crc in place, where the layout allows."""
    if len(data) < HEADER_SIZE + CRC_SIZE:
        return
    data[40:44] = struct.pack(">I", zlib.crc32(data[:40]))
    try:
        header = pil_kmq.format.parse_header(bytes(data[:HEADER_SIZE]))
    except OSError:
        return
    if header.index_coding == IndexCoding.STRIPS and header.height < 1 << 16:
        _fix_strips(data, header)
    end = min(header.file_length, len(data)) - CRC_SIZE
    if end > 0:
        data[end : end + CRC_SIZE] = struct.pack(">I", zlib.crc32(data[:end]))


def _fix_strips(data: bytearray, header: pil_kmq.Header) -> None:
    start = header.index_stream_offset
    if len(data) < start + 4:
        return
    strip_height = struct.unpack_from(">I", data, start)[0]
    if not 1 <= strip_height <= header.height:
        return
    count = -(-header.height // strip_height)
    table = start + 4
    position = table + 12 * count
    for number in range(count):
        entry = table + 12 * number
        if entry + 12 > len(data):
            return
        length = struct.unpack_from(">Q", data, entry)[0]
        if position + length > len(data):
            return
        data[entry + 8 : entry + 12] = struct.pack(">I", zlib.crc32(data[position : position + length]))
        position += length


def decode(data: bytes) -> None:
    """Every way a client reads a file: open + load, verify, the parser, and the numpy API."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except ALLOWED:
        pass
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except ALLOWED:
        pass
    try:
        parser = ImageFile.Parser()
        for start in range(0, len(data), 97):
            parser.feed(data[start : start + 97])
        parser.close()
    except ALLOWED:
        pass
    try:
        pil_kmq.decode_kmq(data, max_pixels=MAX_PIXELS)
    except ALLOWED:
        pass


def recode_strips(data: bytearray, noise: bytes) -> None:
    """Structure-aware mutation: decompress each runs strip's flags and literals (each rows
    strip's rows), XOR them with `noise`, compress them again with the same codec, and rebuild the stream and its lengths.
    Mutating compressed bytes almost never yields a valid stream; this reaches the rules that
    apply to what decompresses (literal range, flag rules, sizes). Checksums are mended after."""
    if not noise or len(data) < HEADER_SIZE:
        return
    try:
        header = pil_kmq.format.parse_header(bytes(data[:HEADER_SIZE]))
    except OSError:
        return
    if header.index_coding != IndexCoding.STRIPS or header.height >= 1 << 16:
        return
    start = header.index_stream_offset
    end = start + header.index_stream_length
    if len(data) < end or len(data) < start + 4:
        return
    strip_height = struct.unpack_from(">I", data, start)[0]
    if not 1 <= strip_height <= header.height:
        return
    count = -(-header.height // strip_height)
    position = start + 4 + 12 * count
    strips = []
    for number in range(count):
        length = struct.unpack_from(">Q", data, start + 4 + 12 * number)[0] if start + 16 + 12 * number <= len(data) else 0
        strips.append(_recode_one(bytes(data[position : position + length]), noise, number))
        position += length
    table = struct.pack(">I", strip_height) + b"".join(struct.pack(">QI", len(strip), 0) for strip in strips)
    stream = table + b"".join(strips)
    data[start:end] = stream
    data[32:40] = struct.pack(">Q", len(stream))
    fix_checksums(data)


def _recode_one(strip: bytes, noise: bytes, number: int) -> bytes:
    import zstandard

    if strip[:1] in (b"\x03", b"\x06", b"\x07"):  # rows_zstd, byte_rows_zstd, med_rows_zstd: one frame of rows
        try:
            rows = zstandard.ZstdDecompressor().decompress(strip[1:], max_output_size=1 << 22)
        except Exception:  # noqa: BLE001 - an undecodable strip is left as it is
            return strip
        mutated = bytes(byte ^ noise[(i + number) % len(noise)] for i, byte in enumerate(rows[:4096])) + rows[4096:]
        return strip[:1] + zstandard.ZstdCompressor(write_content_size=True).compress(mutated)
    if len(strip) < 9 or strip[0] not in (1, 2):
        return strip
    flags_length = struct.unpack_from(">Q", strip, 1)[0]
    parts = [strip[9 : 9 + flags_length], strip[9 + flags_length :]]
    try:
        if strip[0] == 1:
            plain = [zlib.decompress(part) for part in parts]
        else:
            plain = [zstandard.ZstdDecompressor().decompress(part, max_output_size=1 << 22) for part in parts]
    except Exception:  # noqa: BLE001 - an undecodable strip is left as it is
        return strip
    mutated = []
    for which, part in enumerate(plain):
        key = noise[which::2] or noise
        mutated.append(bytes(byte ^ key[(i + number) % len(key)] for i, byte in enumerate(part[:4096])) + part[4096:])
    if strip[0] == 1:
        coded = [zlib.compress(part) for part in mutated]
    else:
        coded = [zstandard.ZstdCompressor(write_content_size=True).compress(part) for part in mutated]
    return bytes([strip[0]]) + struct.pack(">Q", len(coded[0])) + coded[0] + coded[1]
