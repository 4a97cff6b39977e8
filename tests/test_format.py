"""Header rules of spec section 9.1, each checked on its own with a valid header_crc."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import pytest

from pil_kmq.format import (
    HEADER_SIZE,
    MAGIC,
    Header,
    IndexCoding,
    KmqError,
    bits_for_k,
    new_header,
    parse_extensions,
    parse_header,
    raw_stream_length,
)

GOOD = new_header(3, 2, 3, 3, IndexCoding.NONE, 2)


def with_fields(**changes: object) -> bytes:
    """GOOD's header bytes with fields changed and header_crc recomputed."""
    return dataclasses.replace(GOOD, **changes).pack()


def patched(offset: int, value: bytes) -> bytes:
    """GOOD's header with raw bytes replaced and header_crc recomputed."""
    body = bytearray(GOOD.pack()[:40])
    body[offset : offset + len(value)] = value
    return bytes(body) + struct.pack(">I", zlib.crc32(body))


def test_header_round_trips() -> None:
    assert len(GOOD.pack()) == HEADER_SIZE
    assert parse_header(GOOD.pack()) == GOOD


@pytest.mark.parametrize(("k", "bits"), [(1, 0), (2, 1), (3, 2), (16, 4), (17, 5), (256, 8), (257, 9), (65536, 16)])
def test_bits_per_index_is_ceil_log2_k(k: int, bits: int) -> None:
    assert bits_for_k(k) == bits


def test_article_stream_lengths() -> None:
    assert raw_stream_length(100, 100, 4) * 8 == 40_000
    assert raw_stream_length(303, 227, 1) == 8_598  # 68,781 bits + 3 padding bits


def test_short_header_raises() -> None:
    with pytest.raises(KmqError, match="truncated KMQ header"):
        parse_header(GOOD.pack()[:43])


def test_bad_magic_raises() -> None:
    with pytest.raises(KmqError, match="magic"):
        parse_header(b"\x89PNG\r\n\x1a\n" + GOOD.pack()[8:])


def test_unknown_major_version_is_named_before_crc_check() -> None:
    data = bytearray(GOOD.pack())
    data[8] = 2  # header_crc now wrong too: the version must be reported, not the CRC
    with pytest.raises(KmqError, match="unsupported KMQ major version 2"):
        parse_header(bytes(data))


def test_newer_minor_version_is_read() -> None:
    assert parse_header(with_fields(version_minor=7)).version_minor == 7


def test_header_crc_mismatch_raises() -> None:
    data = bytearray(GOOD.pack())
    data[12] ^= 1
    with pytest.raises(KmqError, match="header checksum mismatch"):
        parse_header(bytes(data))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels": 0}, "channels must be 1 to 4"),
        ({"channels": 5}, "channels must be 1 to 4"),
        ({"width": 0}, "width must be"),
        ({"height": 0}, "height must be"),
        ({"width": 2**31}, "width must be"),
        ({"width": 2**31 - 1, "height": 2**31 - 1}, "at most 2\\*\\*56"),
        ({"k": 0, "bits_per_index": 0}, "k must be 1 to 65536"),
        ({"k": 65537, "bits_per_index": 17}, "k must be 1 to 65536"),
        ({"bits_per_index": 3}, "bits_per_index is 3 but k=3 needs 2"),
        ({"index_stream_length": 3}, "index_stream_length is 3 bytes"),
    ],
)
def test_invalid_header_field_raises_naming_it(changes: dict[str, int], message: str) -> None:
    with pytest.raises(KmqError, match=message):
        parse_header(with_fields(**changes))


def test_unknown_index_coding_raises() -> None:
    with pytest.raises(KmqError, match="unknown KMQ index_coding 9"):
        parse_header(patched(24, b"\x09"))


def test_a_coded_codebook_must_be_shorter_than_the_raw_one() -> None:
    """Bytes 25-27 are codebook_stream_length: below k x channels (9 here), or the codebook is raw."""
    assert parse_header(patched(25, b"\x00\x00\x08")).codebook_length == 8
    for value in (b"\x00\x00\x09", b"\x00\x01\x00", b"\xff\xff\xff"):
        with pytest.raises(KmqError, match="codebook_stream_length must be below k x channels = 9"):
            parse_header(patched(25, value))


def test_extension_chunks_must_tile_the_area() -> None:
    chunk = b"abcd" + struct.pack(">I", 2) + b"xy"
    assert parse_extensions(chunk + chunk) == [(b"abcd", b"xy"), (b"abcd", b"xy")]
    with pytest.raises(KmqError, match="declares 2 bytes"):
        parse_extensions(chunk[:-1])
    with pytest.raises(KmqError, match="cut short"):
        parse_extensions(chunk + b"abc")


def test_magic_is_png_style() -> None:
    assert MAGIC == b"\x89KMQ\r\n\x1a\n"
    assert isinstance(GOOD, Header)


def test_short_file_of_another_major_version_names_the_version() -> None:
    with pytest.raises(KmqError, match="unsupported KMQ major version 2"):
        parse_header(MAGIC + b"\x02\x00")


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        (b"zz1Z", "is not four ASCII letters"),
        (b"\xffzzz", "is not four ASCII letters"),
        (b"Crit", r"critical \(upper-case first letter\) and unknown"),
    ],
)
def test_extension_chunk_tag_rules(tag: bytes, message: str) -> None:
    with pytest.raises(KmqError, match=message):
        parse_extensions(tag + struct.pack(">I", 0))


def test_unknown_ancillary_chunks_are_skipped_and_known_ones_may_not_repeat() -> None:
    chunk = b"meta" + struct.pack(">I", 1) + b"x"
    assert parse_extensions(chunk + chunk) == [(b"meta", b"x"), (b"meta", b"x")]
    with pytest.raises(KmqError, match="appears twice"):
        parse_extensions(chunk + chunk, known=frozenset({b"meta"}))


def test_an_empty_known_chunk_still_counts_as_its_copy() -> None:
    """Spec 5 and 9.1.7: read as absent, yet a second chunk with its tag is a repeat."""
    empty, full = b"iccp" + struct.pack(">I", 0), b"iccp" + struct.pack(">I", 2) + b"ab"
    with pytest.raises(KmqError, match="iccp appears twice"):
        parse_extensions(empty + full, known=frozenset({b"iccp"}))
