"""A field-aware mutator for KMQ files: it parses a file into its fields, changes one or a few
of them (header fields, chunks, the strip table, a strip's method, flags_length, its
decompressed flags, literals or packed rows and how they are compressed, a near_rans or near_flat strip's
model, state and words), writes the file back with its
lengths made consistent or not, and re-computes every checksum (header_crc, strip_crc,
file_crc), so that mutations reach the rules behind the checksums.
"""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass, field

import zstandard

from pil_kmq.format import CRC_SIZE, HEADER_SIZE, ROWS_METHODS, StripMethod, crc32
from pil_kmq.near import CONTEXTS, NEAR_FLAT_TABLES

_HEADER = struct.Struct(">8sBBBBIIIB3sIQ")
ZSTD_SKIPPABLE = struct.pack("<II", 0x184D2A50, 4) + b"skip"
INTERESTING_U32 = (0, 1, 2, 3, 7, 8, 255, 256, 257, 65_535, 65_536, 65_537, 2**31 - 1, 2**31, 2**32 - 1)
INTERESTING_U64 = (0, 1, 8, 9, 2**31, 2**32, 2**63, 2**64 - 1)


@dataclass
class Strip:
    method: int
    raw: bytes = b""  # method 0's payload, or undecodable bytes kept as they are
    flags: bytes = b""  # decompressed
    literals: bytes = b""  # decompressed
    rows: bytes = b""  # a rows strip's rows (ROWS_METHODS; med_rows_zstd's residuals), decompressed
    flags_length: int | None = None  # None: the length of the coded flags
    coder: str = "plain"  # how flags and literals are compressed again
    decoded: bool = False
    original: bytes | None = None  # the strip's bytes, written back while it is not mutated


@dataclass
class KmqFile:
    fields: list  # the header's fields before header_crc, as _HEADER unpacks them
    chunks: list[tuple[bytes, bytes]]
    codebook: bytes
    strip_height: int | None = None
    strips: list[Strip] = field(default_factory=list)
    stream: bytes = b""  # an uncoded index stream, or one that did not parse
    tail: bytes = b""  # bytes after file_crc
    codebook_length_set: bool = False  # codebook_stream_length mutated: build keeps it


def parse(data: bytes) -> KmqFile | None:
    """The file's fields, as far as they parse; None if not even the header does."""
    if len(data) < HEADER_SIZE + CRC_SIZE:
        return None
    fields = list(_HEADER.unpack_from(data))
    k, channels, ext_len, coding, stream_len = fields[7], fields[3], fields[10], fields[8], fields[11]
    position = HEADER_SIZE
    chunks = []
    end = min(position + ext_len, len(data))
    while position + 8 <= end:
        tag, length = struct.unpack_from(">4sI", data, position)
        chunks.append((tag, bytes(data[position + 8 : position + 8 + length])))
        position += 8 + length
    position = HEADER_SIZE + ext_len
    stored = int.from_bytes(fields[9], "big") or k * channels  # codebook_stream_length, or raw
    codebook = bytes(data[position : position + stored])
    position += stored
    stream = bytes(data[position : position + stream_len])
    kmq = KmqFile(fields, chunks, codebook, tail=bytes(data[position + stream_len + CRC_SIZE :]))
    if coding != 1 or len(stream) < 4:
        kmq.stream = stream
        return kmq
    height = fields[6]
    strip_height = struct.unpack_from(">I", stream)[0]
    if not 1 <= strip_height <= height or 4 + 12 * -(-height // strip_height) > len(stream):
        kmq.stream = stream
        return kmq
    kmq.strip_height = strip_height
    count = -(-height // strip_height)
    at = 4 + 12 * count
    for number in range(count):
        length = struct.unpack_from(">Q", stream, 4 + 12 * number)[0]
        kmq.strips.append(_parse_strip(stream[at : at + length]))
        at += length
    return kmq


def _parse_strip(data: bytes) -> Strip:
    strip = _decode_strip(data)
    strip.original = data
    return strip


def _decode_strip(data: bytes) -> Strip:
    if data[:1] and data[0] in ROWS_METHODS:
        try:
            rows = zstandard.ZstdDecompressor().decompress(data[1:], max_output_size=1 << 24)
        except zstandard.ZstdError:
            return Strip(data[0], raw=data[1:])
        return Strip(data[0], rows=rows, coder="zstd", decoded=True)
    if not data or data[0] not in (1, 2) or len(data) < 9:
        return Strip(data[0] if data else 0, raw=data[1:])
    flags_length = struct.unpack_from(">Q", data, 1)[0]
    parts = data[9 : 9 + flags_length], data[9 + flags_length :]
    try:
        if data[0] == 1:
            plain = [zlib.decompress(part) for part in parts]
        else:
            plain = [zstandard.ZstdDecompressor().decompress(part, max_output_size=1 << 24) for part in parts]
    except (zlib.error, zstandard.ZstdError):
        return Strip(data[0], raw=data[1:])
    return Strip(data[0], flags=plain[0], literals=plain[1], coder="zlib" if data[0] == 1 else "zstd", decoded=True)


def _compress(data: bytes, coder: str) -> bytes:
    if coder == "zlib":
        return zlib.compress(data, 6)
    if coder == "zlib-trailing":
        return zlib.compress(data) + b"\x00"
    if coder == "zstd":
        return zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data)
    if coder == "zstd-no-size":
        return zstandard.ZstdCompressor(level=3, write_content_size=False).compress(data)
    if coder == "zstd-checksum":
        return zstandard.ZstdCompressor(level=3, write_content_size=True, write_checksum=True).compress(data)
    if coder == "zstd-skippable-before":
        return ZSTD_SKIPPABLE + zstandard.ZstdCompressor(write_content_size=True).compress(data)
    if coder == "zstd-skippable-after":
        return zstandard.ZstdCompressor(write_content_size=True).compress(data) + ZSTD_SKIPPABLE
    if coder == "zstd-two-frames":
        half = len(data) // 2
        compressor = zstandard.ZstdCompressor(write_content_size=True)
        return compressor.compress(data[:half]) + compressor.compress(data[half:])
    raise ValueError(coder)


def _strip_bytes(strip: Strip) -> bytes:
    if strip.original is not None:
        return strip.original
    if not strip.decoded:
        return bytes([strip.method]) + strip.raw
    if strip.method in ROWS_METHODS:
        return bytes([strip.method]) + _compress(strip.rows, strip.coder)
    coded_flags = _compress(strip.flags, strip.coder)
    coded_literals = _compress(strip.literals, strip.coder)
    flags_length = len(coded_flags) if strip.flags_length is None else strip.flags_length
    return bytes([strip.method]) + struct.pack(">Q", flags_length) + coded_flags + coded_literals


def build(kmq: KmqFile, fix_lengths: bool = True) -> bytes:
    """The file's bytes, every checksum re-computed; with fix_lengths the header's lengths
    and the strip table's follow what the file holds."""
    extension = b"".join(struct.pack(">4sI", tag, len(payload)) + payload for tag, payload in kmq.chunks)
    if kmq.strip_height is not None:
        strips = [_strip_bytes(strip) for strip in kmq.strips]
        table = struct.pack(">I", kmq.strip_height) + b"".join(struct.pack(">QI", len(strip), crc32(strip)) for strip in strips)
        stream = table + b"".join(strips)
    else:
        stream = kmq.stream
    fields = list(kmq.fields)
    if fix_lengths:
        fields[10], fields[11] = len(extension), len(stream)
        if int.from_bytes(fields[9], "big") and not kmq.codebook_length_set:  # a coded codebook: its length follows it
            fields[9] = min(len(kmq.codebook), 2**24 - 1).to_bytes(3, "big")
    header = _HEADER.pack(*fields)
    body = header + struct.pack(">I", crc32(header)) + extension + kmq.codebook + stream
    return body + struct.pack(">I", crc32(body)) + kmq.tail


# --- mutations -------------------------------------------------------------------------------


def _flip(data: bytes, rng: random.Random, count: int = 1) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    mutable = bytearray(data)
    for _ in range(count):
        mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
    return bytes(mutable)


def _header_field(kmq: KmqFile, rng: random.Random) -> None:
    index = rng.choice((2, 3, 4, 5, 6, 7, 8, 10, 11))  # minor, channels, bits, width, height, k, coding, ext, stream
    if index in (2, 3, 4, 8):
        kmq.fields[index] = rng.choice((0, 1, 2, 3, 4, 5, 16, 17, 255, rng.randrange(256)))
    elif index == 11:
        kmq.fields[index] = rng.choice(INTERESTING_U64)
    else:
        kmq.fields[index] = rng.choice(INTERESTING_U32 + (min(2**32 - 1, kmq.fields[index] + 1), max(0, kmq.fields[index] - 1)))


def _chunk(kmq: KmqFile, rng: random.Random) -> None:
    choice = rng.randrange(6)
    if choice == 0 and kmq.chunks:
        kmq.chunks.append(rng.choice(kmq.chunks))  # a second copy
    elif choice == 1:
        kmq.chunks.append((rng.choice((b"exif", b"iccp", b"xmpp")), b""))  # an empty known chunk
    elif choice == 2:
        kmq.chunks.append((b"exif", rng.choice((b"II*\0", b"MM\0*", b"Exif\0\0II*\0", b"junk", b"II*\0\x08\0\0\0\xff\xff"))))
    elif choice == 3:
        kmq.chunks.append((rng.choice((b"zzZZ", b"Crit", b"a1b2", b"\0\0\0\0")), b"data"))
    elif choice == 4 and kmq.chunks:
        tag, payload = kmq.chunks.pop(rng.randrange(len(kmq.chunks)))
        kmq.chunks.append((tag, _flip(payload, rng, 3)))
    else:
        kmq.chunks.append((b"iccp", bytes(rng.randrange(256) for _ in range(rng.randrange(200)))))


def _table(kmq: KmqFile, rng: random.Random) -> None:
    choice = rng.randrange(4)
    height = kmq.fields[6]
    if choice == 0:
        kmq.strip_height = rng.choice((1, 2, height, min(height + 1, 2**32 - 1), max(1, height // 2), 0))  # height may be mutated to u32's top
    elif choice == 1 and kmq.strips:
        kmq.strips.pop(rng.randrange(len(kmq.strips)))
    elif choice == 2 and kmq.strips:
        kmq.strips.insert(rng.randrange(len(kmq.strips)), rng.choice(kmq.strips))
    elif kmq.strips:
        kmq.strips[rng.randrange(len(kmq.strips))] = Strip(rng.choice((0, 1, 2, 3, 4, 5, 255)), raw=b"")


def _strip(kmq: KmqFile, rng: random.Random) -> None:
    if not kmq.strips:
        kmq.stream = _flip(kmq.stream, rng, rng.randrange(1, 4))
        return
    strip = rng.choice(kmq.strips)
    strip.original = None
    if strip.method in ROWS_METHODS and strip.decoded:
        _rows_strip(strip, rng)
        return
    if strip.method in NEAR_TABLES and rng.random() < 0.8:
        strip.raw = _near_payload(strip.raw, rng, NEAR_TABLES[strip.method])
        return
    choice = rng.randrange(9)
    if not strip.decoded or choice == 0:
        strip.method = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, strip.method))
        strip.raw = _flip(strip.raw, rng) if strip.raw else strip.raw
        return
    if choice == 1:
        strip.flags = _flip(strip.flags, rng, rng.randrange(1, 4))
    elif choice == 2:
        strip.flags = bytes([strip.flags[0] | 0x80]) + strip.flags[1:] if strip.flags else b"\x80"  # f[0] = 1
    elif choice == 3:
        strip.flags = strip.flags[: rng.randrange(len(strip.flags) + 1)] + (b"\xff" if rng.random() < 0.5 else b"")
    elif choice == 4:
        strip.literals = _flip(strip.literals, rng, rng.randrange(1, 4))
    elif choice == 5:
        strip.literals = strip.literals + bytes([255, 255]) if rng.random() < 0.5 else strip.literals[:-1]
    elif choice == 6:
        strip.flags_length = rng.choice(INTERESTING_U64 + (0, 1, 5))
    elif choice == 7:
        strip.coder = rng.choice(("zlib", "zlib-trailing", "zstd", "zstd-no-size", "zstd-checksum", "zstd-skippable-before", "zstd-skippable-after", "zstd-two-frames"))
        strip.method = 1 if strip.coder.startswith("zlib") else 2
    else:
        strip.flags = b"\x7f" + b"\xff" * (len(strip.flags) - 1) if strip.flags else strip.flags  # one long run


def _rows_strip(strip: Strip, rng: random.Random) -> None:
    """A rows strip (ROWS_METHODS): its rows (index values or residuals, padding bits, length),
    its frame, or its rows read as another rows method (packed as whole bytes, whole bytes as
    packed: the lengths then disagree; indices as residuals, or residuals as indices)."""
    choice = rng.randrange(7)
    if choice == 0:
        strip.rows = _flip(strip.rows, rng, rng.randrange(1, 4))
    elif choice == 1 and strip.rows:
        at = rng.randrange(len(strip.rows))
        strip.rows = strip.rows[:at] + bytes([strip.rows[at] | rng.choice((1, 3, 0x0F, 0xFF))]) + strip.rows[at + 1 :]  # padding, high values
    elif choice == 2:
        strip.rows = strip.rows[: rng.randrange(len(strip.rows) + 1)] if rng.random() < 0.5 else strip.rows + bytes(rng.randrange(1, 9))
    elif choice == 3:
        strip.coder = rng.choice(("zlib", "zstd", "zstd-no-size", "zstd-checksum", "zstd-skippable-before", "zstd-skippable-after", "zstd-two-frames"))
    elif choice == 4:
        strip.method = rng.choice((0, 1, 2))  # the same bytes read as another method
        strip.decoded, strip.raw = False, _compress(strip.rows, strip.coder)
    elif choice == 5:  # another rows method's reading of the same bytes
        strip.method = rng.choice([method for method in (3, 6, 7) if method != strip.method])
    else:
        strip.rows = b"\xff" * len(strip.rows)


NEAR_TABLES = {StripMethod.NEAR_RANS: CONTEXTS, StripMethod.NEAR_FLAT: NEAR_FLAT_TABLES}  # model tables


def _model_length(payload: bytes, tables: int) -> int:
    """Bytes of a near_rans or near_flat payload's model (`tables` of them), as far as they parse."""
    at = 0
    for _ in range(tables):
        if at >= len(payload):
            break
        count = payload[at]
        at += 1
        for _ in range(count):
            at += 2 if at < len(payload) and payload[at] & 0x80 else 1
    return min(at, len(payload))


def _near_payload(payload: bytes, rng: random.Random, tables: int) -> bytes:
    """A near_rans or near_flat payload with its model, initial state or words changed."""
    model = _model_length(payload, tables)
    head, state, words = payload[:model], payload[model : model + 4], payload[model + 4 :]
    choice = rng.randrange(8)
    if choice == 0:
        head = _flip(head, rng, rng.randrange(1, 3))  # token counts and frequencies
    elif choice == 1 and head:
        at = rng.randrange(len(head))
        head = head[:at] + bytes([rng.choice((0, 1, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 0x7F, 0x80, 0xFF))]) + head[at + 1 :]
    elif choice == 2:
        state = rng.choice((0, 1, 0xFFFF, 0x10000, 0xFFFFFFFF, rng.randrange(1 << 32))).to_bytes(4, "big")
    elif choice == 3:
        words = _flip(words, rng, rng.randrange(1, 4))
    elif choice == 4:
        words = words[: rng.randrange(len(words) + 1)] if rng.random() < 0.5 else words + bytes(rng.choice((1, 2, 4)))
    elif choice == 5:
        words = b"\xff" * len(words)
    elif choice == 6:
        head = bytes([24] + [0xAA, 0x01] * 23 + [0xBA, 0x01]) * tables  # every context used: 23 x 170 + 186 = 4096
    else:
        return payload[: rng.randrange(len(payload) + 1)]
    return head + state + words


def _codebook(kmq: KmqFile, rng: random.Random) -> None:
    if int.from_bytes(kmq.fields[9], "big") and rng.random() < 0.7:
        _coded_codebook(kmq, rng)
    elif rng.random() < 0.1:
        kmq.fields[9] = rng.choice((1, 2, 255, 65_536, 2**24 - 1, len(kmq.codebook))).to_bytes(3, "big")
        kmq.codebook_length_set = True
    else:
        kmq.codebook = kmq.codebook[: rng.randrange(len(kmq.codebook) + 1)] if rng.random() < 0.5 else kmq.codebook + b"\x00" * rng.randrange(1, 9)


def _coded_codebook(kmq: KmqFile, rng: random.Random) -> None:
    """A coded codebook's differences changed and compressed again, or its frame broken: no
    content size, a skippable frame first, bytes after it, another content size."""
    try:
        deltas = zstandard.ZstdDecompressor().decompress(kmq.codebook)
    except zstandard.ZstdError:
        kmq.codebook = _flip(kmq.codebook, rng, 2)
        return
    choice = rng.randrange(5)
    if choice == 0:
        kmq.codebook = zstandard.ZstdCompressor(level=3).compress(_flip(deltas, rng, 4))
    elif choice == 1:
        kmq.codebook = zstandard.ZstdCompressor(write_content_size=False).compress(deltas)
    elif choice == 2:
        kmq.codebook = ZSTD_SKIPPABLE + kmq.codebook
    elif choice == 3:
        kmq.codebook += bytes(rng.randrange(1, 5))
    else:
        kmq.codebook = zstandard.ZstdCompressor().compress(deltas[: rng.randrange(len(deltas) + 1)] + bytes(rng.randrange(3)))


def _tail(kmq: KmqFile, rng: random.Random) -> None:
    kmq.tail = rng.choice((b"", b"garbage after file_crc", bytes(100)))


MUTATIONS = (_header_field, _chunk, _table, _strip, _strip, _strip, _codebook, _tail)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """data with one to three field mutations, every checksum re-computed; truncated or with a
    bit flipped after the checksums now and then, so the outer rules stay covered too."""
    kmq = parse(data)
    if kmq is None:
        return _flip(data, rng)
    for _ in range(rng.randrange(1, 4)):
        rng.choice(MUTATIONS)(kmq, rng)
    out = build(kmq, fix_lengths=rng.random() < 0.9)
    roll = rng.random()
    if roll < 0.05:
        return out[: rng.randrange(len(out) + 1)]
    if roll < 0.08:
        return _flip(out, rng)
    return out
