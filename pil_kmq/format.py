"""KMQ byte layout: the header, extension chunks, constants and their validation.

This module is the spec (``spec/kmq.md``) in code. It knows nothing of Pillow or k-means.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

# PNG-style signature: the high byte catches 7-bit transfers, CR LF / LF catch newline
# translation, 0x1A stops `type` on DOS.
MAGIC = b"\x89KMQ\r\n\x1a\n"
VERSION_MAJOR = 1
VERSION_MINOR = 10  # 1.1 added index_coding 1 (strips), 1.2 the metadata chunks, 1.3 strip_method 3, 1.4 strip_method 4, 1.5 a coded codebook, 1.6 strip_method 4 above 256 entries, 1.7 above 1,024, 1.8 strip_method 5, 1.9 strip_method 6, 1.10 strip_method 7
CODEBOOK_MINOR = 5  # the version_minor of a file whose codebook_stream_length is not 0

HEADER_SIZE = 44
CRC_SIZE = 4
CHUNK_HEAD_SIZE = 8
MAX_K = 65_536
MAX_DIMENSION = 2**31 - 1
MAX_PIXELS = 2**56  # keeps width * height * bits_per_index (+ padding) inside a u64
MAX_BITS_PER_INDEX = 16
MAX_EXTENSION_LENGTH = 2**32 - 1

# Metadata chunks (spec 5.1), ancillary: Pillow's info key -> chunk_tag. EXIF is stored as a
# TIFF structure without the "Exif\0\0" prefix of JPEG, as PNG's eXIf chunk does.
METADATA_CHUNKS = {"icc_profile": b"iccp", "exif": b"exif", "xmp": b"xmpp"}
KNOWN_CHUNKS = frozenset(METADATA_CHUNKS.values())
EXIF_PREFIX = b"Exif\0\0"
TIFF_HEADERS = (b"II*\0", b"MM\0*")

# magic, version_major, version_minor, channels, bits_per_index, width, height, k,
# index_coding, codebook_stream_length (u24), extension_length, index_stream_length (header_crc
# follows).
_HEADER = struct.Struct(">8sBBBBIIIB3sIQ")
_MAJOR_OFFSET = 8
_CRC = struct.Struct(">I")
_CHUNK_HEAD = struct.Struct(">4sI")


class IndexCoding(IntEnum):
    """How the index stream is stored (header field ``index_coding``)."""

    NONE = 0  # bit-packed indices, MSB first, no row padding
    STRIPS = 1  # strips of rows, each stored by its own strip_method (spec 7.2)


class StripMethod(IntEnum):
    """How one strip of an index_coding 1 stream is stored (its first byte, ``strip_method``)."""

    RAW = 0  # bit-packed indices of the strip's rows, as index_coding 0
    RUNS_ZLIB = 1  # run flags and literals, each a zlib stream
    RUNS_ZSTD = 2  # run flags and literals, each a zstd frame
    ROWS_ZSTD = 3  # rows bit-packed at a whole-byte-friendly width, each padded to a byte; one zstd frame
    NEAR_RANS = 4  # each index by rank among its neighbours and nearby colours, range-ANS coded (k <= 4,096)
    NEAR_FLAT = 5  # near_rans, each long flat stretch one symbol: what pil_kmq writes for near coding
    BYTE_ROWS_ZSTD = 6  # rows as ROWS_ZSTD, each index in whole bytes however few bits it needs
    MED_ROWS_ZSTD = 7  # rows a byte a pixel: each index less its neighbours' MED prediction (k <= 256)


# A med_rows_zstd strip's decoder holds the row above: rows of at most this many pixels (spec 7.2),
# so that what it holds stays within a piece however wide the image.
MED_MAX_WIDTH = 1 << 20
NEAR_METHODS = frozenset({StripMethod.NEAR_RANS, StripMethod.NEAR_FLAT})  # decoded by near.NearStrip
ROWS_METHODS = frozenset({StripMethod.ROWS_ZSTD, StripMethod.BYTE_ROWS_ZSTD, StripMethod.MED_ROWS_ZSTD})  # one zstd frame of whole rows


def index_dtype(k: int) -> np.dtype:
    """The one rule for indices in memory: uint8 when k <= 256 (bits_per_index <= 8), else uint16."""
    return np.dtype(np.uint8 if k <= 256 else np.uint16)


class KmqError(OSError):
    """A KMQ file is malformed, corrupt or of an unsupported version."""


# Channel count -> Pillow mode of the decoded image (spec: "Channel layouts").
CHANNEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def bits_for_k(k: int) -> int:
    """ceil(log2 k): bits needed for an index in [0, k); 0 when k == 1."""
    return (k - 1).bit_length()


def field_width(bits_per_index: int) -> int:
    """Bits of a literal in a coded strip: whole bytes, so byte-oriented codecs see whole indices
    (measured: 8-bit literals compress better than 4-bit ones even at k = 16)."""
    return 8 if bits_per_index <= 8 else 16


def packing_width(bits_per_index: int, method: StripMethod = StripMethod.ROWS_ZSTD) -> int:
    """Bits per index in a rows strip: in rows_zstd the smallest of 1, 2, 4, 8 and 16 that holds
    an index, so that no index straddles a byte and a row's bytes repeat when its indices do; in
    byte_rows_zstd whole bytes, so that they repeat wherever in a row the indices do; in
    med_rows_zstd a byte (it holds k <= 256 entries), each a residual, not an index."""
    if method in (StripMethod.BYTE_ROWS_ZSTD, StripMethod.MED_ROWS_ZSTD):
        return field_width(bits_per_index)
    return next(width for width in (1, 2, 4, 8, 16) if width >= bits_per_index)


def row_bytes(width: int, bits_per_index: int, method: StripMethod = StripMethod.ROWS_ZSTD) -> int:
    """Bytes of one row of a rows strip (ROWS_METHODS), padded to a whole byte."""
    return (width * packing_width(bits_per_index, method) + 7) // 8


def raw_stream_length(width: int, height: int, bits_per_index: int) -> int:
    """Bytes of an uncoded index stream: width*height indices, padded to a whole byte."""
    return (width * height * bits_per_index + 7) // 8


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32 (ISO-HDLC, as zlib and PNG) of data, continuing from value."""
    return zlib.crc32(data, value)


@dataclass(frozen=True)
class Header:
    """The fixed 44-byte header, field names as in the spec."""

    width: int
    height: int
    channels: int
    k: int
    bits_per_index: int
    index_coding: IndexCoding
    index_stream_length: int
    extension_length: int = 0
    version_major: int = VERSION_MAJOR
    version_minor: int = VERSION_MINOR
    codebook_stream_length: int = 0  # 0: the codebook is stored raw (last: older callers pass the versions by position)

    @property
    def mode(self) -> str:
        """Pillow mode of the decoded image."""
        return CHANNEL_MODES[self.channels]

    @property
    def codebook_length(self) -> int:
        """Bytes of the codebook section: k entries of `channels` uint8 values, or their coded
        stream."""
        return self.codebook_stream_length or self.raw_codebook_length

    @property
    def raw_codebook_length(self) -> int:
        return self.k * self.channels

    @property
    def codebook_offset(self) -> int:
        return HEADER_SIZE + self.extension_length

    @property
    def index_stream_offset(self) -> int:
        return self.codebook_offset + self.codebook_length

    @property
    def file_length(self) -> int:
        """Bytes of the whole file, file_crc included."""
        return self.index_stream_offset + self.index_stream_length + CRC_SIZE

    def pack(self) -> bytes:
        """The header's 44 bytes, header_crc included."""
        body = _HEADER.pack(
            MAGIC,
            self.version_major,
            self.version_minor,
            self.channels,
            self.bits_per_index,
            self.width,
            self.height,
            self.k,
            self.index_coding,
            self.codebook_stream_length.to_bytes(3, "big"),
            self.extension_length,
            self.index_stream_length,
        )
        return body + _CRC.pack(crc32(body))


# The version_minor that introduced each strip_method.
METHOD_MINOR = {StripMethod.RAW: 1, StripMethod.RUNS_ZLIB: 1, StripMethod.RUNS_ZSTD: 1, StripMethod.ROWS_ZSTD: 3, StripMethod.NEAR_RANS: 4, StripMethod.NEAR_FLAT: 8, StripMethod.BYTE_ROWS_ZSTD: 9, StripMethod.MED_ROWS_ZSTD: 10}


# near_rans strips of a codebook of more than 256 entries (1.6), of more than 1,024 (1.7)
WIDE_NEAR_MINOR = {256: 6, 1024: 7}


def strip_minor(methods: Iterable[int], k: int) -> int:
    """The lowest version_minor that has every one of these strip methods, for k entries."""
    used = {StripMethod(method) for method in methods}
    minor = max((METHOD_MINOR[method] for method in used), default=1)
    if StripMethod.NEAR_RANS in used:
        minor = max([minor, *(wide for above, wide in WIDE_NEAR_MINOR.items() if k > above)])
    return minor


def new_header(
    width: int,
    height: int,
    channels: int,
    k: int,
    index_coding: IndexCoding,
    index_stream_length: int,
    extension_length: int = 0,
    strips_minor: int = 0,
    codebook_stream_length: int = 0,
) -> Header:
    """A header for these fields, validated as a reader would validate it; strips_minor: the
    version_minor the strips' methods need (strip_minor)."""
    # version_minor is the lowest that has every feature the file uses: 1.0 readers of
    # index_coding 0 files are not turned away for nothing.
    minor = max(strips_minor, CODEBOOK_MINOR if codebook_stream_length else 0, 2 if extension_length else 1 if index_coding == IndexCoding.STRIPS else 0)
    header = Header(width, height, channels, k, bits_for_k(k), index_coding, index_stream_length, extension_length, version_minor=minor, codebook_stream_length=codebook_stream_length)
    validate_header(header)
    return header


def parse_header(data: bytes) -> Header:
    """Parse and validate the first 44 bytes of a file; raise KmqError naming the problem."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise KmqError("not a KMQ file (bad magic bytes)")
    # The major version is checked first, on its own: another major version may lay out
    # (and size) its header differently, and deserves a message that names it.
    if len(data) > _MAJOR_OFFSET and data[_MAJOR_OFFSET] != VERSION_MAJOR:
        raise KmqError(f"unsupported KMQ major version {data[_MAJOR_OFFSET]} (this reader reads version {VERSION_MAJOR})")
    if len(data) < HEADER_SIZE:
        raise KmqError(f"truncated KMQ header: {len(data)} of {HEADER_SIZE} bytes")
    fields = _HEADER.unpack_from(data)
    major, minor = fields[1:3]
    (stored_crc,) = _CRC.unpack_from(data, _HEADER.size)
    computed_crc = crc32(data[: _HEADER.size])
    if stored_crc != computed_crc:
        raise KmqError(f"KMQ header checksum mismatch (stored {stored_crc:#010x}, computed {computed_crc:#010x})")
    channels, bits, width, height, k, coding, codebook_stream, ext_len, stream_len = fields[3:]
    if coding not in IndexCoding._value2member_map_:
        raise KmqError(f"unknown KMQ index_coding {coding}")
    header = Header(width, height, channels, k, bits, IndexCoding(coding), stream_len, ext_len, major, minor, int.from_bytes(codebook_stream, "big"))
    validate_header(header)
    return header


def validate_header(header: Header) -> None:
    """Check every header rule of the spec; raise KmqError naming the first broken one."""
    if header.extension_length > MAX_EXTENSION_LENGTH:
        raise KmqError(f"KMQ extension_length must be at most {MAX_EXTENSION_LENGTH}, not {header.extension_length}")
    if header.channels not in CHANNEL_MODES:
        raise KmqError(f"KMQ channels must be 1 to 4, not {header.channels}")
    for name in ("width", "height"):
        value = getattr(header, name)
        if not 1 <= value <= MAX_DIMENSION:
            raise KmqError(f"KMQ {name} must be 1 to {MAX_DIMENSION}, not {value}")
    if header.width * header.height > MAX_PIXELS:
        raise KmqError(f"KMQ width x height must be at most 2**56, not {header.width * header.height}")
    if not 1 <= header.k <= MAX_K:
        raise KmqError(f"KMQ k must be 1 to {MAX_K}, not {header.k}")
    if header.bits_per_index != bits_for_k(header.k):
        raise KmqError(
            f"KMQ bits_per_index is {header.bits_per_index} but k={header.k} needs {bits_for_k(header.k)}"
        )
    if header.codebook_stream_length >= header.raw_codebook_length:
        raise KmqError(
            f"KMQ codebook_stream_length must be below k x channels = {header.raw_codebook_length} (a longer codebook is stored raw), not {header.codebook_stream_length}"
        )
    if header.index_coding == IndexCoding.STRIPS:
        if header.k < 2:
            raise KmqError("KMQ index_coding 1 (strips) needs k >= 2: with k = 1 there is nothing to code")
        if header.index_stream_length < 4:
            raise KmqError(f"KMQ index_stream_length {header.index_stream_length} cannot hold a strip table")
        return
    expected = raw_stream_length(header.width, header.height, header.bits_per_index)
    if header.index_stream_length != expected:
        raise KmqError(
            f"KMQ index_stream_length is {header.index_stream_length} bytes but "
            f"{header.width}x{header.height} at {header.bits_per_index} bits per index needs {expected}"
        )


def parse_extensions(data: bytes, known: frozenset[bytes] = frozenset()) -> list[tuple[bytes, bytes]]:
    """Split the extension area into (tag, payload) chunks. KmqError if they do not tile it, a
    tag is not four ASCII letters, a known chunk repeats, or a critical chunk is unknown."""
    chunks: list[tuple[bytes, bytes]] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < CHUNK_HEAD_SIZE:
            raise KmqError(f"KMQ extension chunk header cut short at byte {offset} of the extension area")
        tag, length = _CHUNK_HEAD.unpack_from(data, offset)
        if not (tag.isascii() and tag.isalpha()):
            raise KmqError(f"KMQ extension chunk tag {tag!r} is not four ASCII letters")
        if tag in known and any(tag == seen for seen, _ in chunks):
            raise KmqError(f"KMQ extension chunk {tag.decode()} appears twice")
        if tag[:1].isupper() and tag not in known:
            raise KmqError(f"KMQ extension chunk {tag.decode()} is critical (upper-case first letter) and unknown to this reader")
        start = offset + CHUNK_HEAD_SIZE
        if length > len(data) - start:
            raise KmqError(f"KMQ extension chunk {tag!r} declares {length} bytes, only {len(data) - start} remain")
        chunks.append((tag, bytes(data[start : start + length])))
        offset = start + length
    return chunks


def pack_extension(tag: bytes, payload: bytes) -> bytes:
    """One extension chunk: 4-byte tag, u32 length, payload."""
    if len(tag) != 4:
        raise ValueError(f"extension chunk tag must be 4 bytes, not {tag!r}")
    return _CHUNK_HEAD.pack(tag, len(payload)) + payload


def pack_metadata(metadata: dict[str, bytes]) -> bytes:
    """The extension area for these metadata (info key -> bytes; empty values are left out)."""
    # In the spec's order (iccp, exif, xmpp), whatever the order they were given in.
    area = b"".join(pack_extension(tag, metadata[key]) for key, tag in METADATA_CHUNKS.items() if metadata.get(key))
    if len(area) > MAX_EXTENSION_LENGTH:
        raise ValueError(f"metadata of {len(area):,} bytes do not fit a KMQ extension area (at most {MAX_EXTENSION_LENGTH:,})")
    return area


def unpack_metadata(chunks: list[tuple[bytes, bytes]]) -> dict[str, bytes]:
    """Pillow info entries from the metadata chunks: "icc_profile", "exif" (with the "Exif\\0\\0"
    prefix Pillow's readers give, as PNG's does) and "xmp"; other chunks are skipped."""
    keys = {tag: key for key, tag in METADATA_CHUNKS.items()}
    info = {keys[tag]: payload for tag, payload in chunks if tag in keys and payload}  # empty: absent
    exif = info.get("exif")
    if exif is not None:
        tiff = exif.removeprefix(EXIF_PREFIX)  # a prefix already there is not doubled
        if tiff.startswith(TIFF_HEADERS):
            info["exif"] = EXIF_PREFIX + tiff
        else:  # spec 9.1.7: with or without the prefix
            del info["exif"]
            warnings.warn("KMQ exif chunk is not EXIF data (no TIFF header): ignored", stacklevel=2)
    return info


def pack_crc(value: int) -> bytes:
    """The 4-byte big-endian file_crc."""
    return _CRC.pack(value)


def unpack_crc(data: bytes) -> int:
    return _CRC.unpack(data)[0]
