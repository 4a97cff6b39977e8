"""Bit packing: MSB first, no gaps, zero padding; the byte-aligned fast paths agree with bitarray."""

from __future__ import annotations

import numpy as np
import pytest

from pil_kmq.bitpack import pack_indices, padding_is_zero, unpack_indices


def reference_pack(values: np.ndarray, bits: int) -> bytes:
    """Spec section 7.1 written out bit by bit."""
    text = "".join(format(int(v), f"0{bits}b") for v in values)
    text += "0" * (-len(text) % 8)
    return bytes(int(text[i : i + 8], 2) for i in range(0, len(text), 8))


@pytest.mark.parametrize("bits", range(1, 17))
def test_pack_matches_spec_bit_layout(bits: int) -> None:
    values = np.random.default_rng(bits).integers(0, 1 << bits, 37)
    assert pack_indices(values, bits) == reference_pack(values, bits)


@pytest.mark.parametrize("bits", range(1, 17))
def test_unpack_inverts_pack_at_any_bit_offset(bits: int) -> None:
    values = np.random.default_rng(bits).integers(0, 1 << bits, 50)
    packed = pack_indices(values, bits)
    assert np.array_equal(unpack_indices(packed, bits, 50), values)
    skip = 7  # start mid-stream: rows need not start on a byte boundary
    assert np.array_equal(unpack_indices(packed, bits, 50 - skip, skip * bits), values[skip:])


def test_zero_bits_pack_to_nothing_and_unpack_to_zeros() -> None:
    assert pack_indices(np.zeros(10, np.uint16), 0) == b""
    assert not unpack_indices(b"", 0, 10).any()


def test_unpack_beyond_data_raises_valueerror() -> None:
    with pytest.raises(ValueError, match="need"):
        unpack_indices(b"\x00", 3, 3)


def test_padding_is_zero_checks_only_bits_after_the_last_index() -> None:
    assert padding_is_zero(b"\x90\x60", 12)
    assert not padding_is_zero(b"\x90\x61", 12)
    assert padding_is_zero(b"\xff", 8)
