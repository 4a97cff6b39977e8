"""The numpy API's argument checks: ValueError for bad arguments, KmqError (OSError) for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from pil_kmq import KmqError, decode_kmq, encode_kmq
from pil_kmq.format import Header, IndexCoding, crc32, pack_crc

BOOK = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)


@pytest.mark.parametrize(
    ("indices", "codebook", "message"),
    [
        ([[0, -1]], BOOK, "indices must be 0 to k-1=1, found -1"),
        ([[0, 2]], BOOK, "indices must be 0 to k-1=1, found 2"),
        ([[0.0, 1.9]], BOOK, "non-empty 2-D integer array"),
        (np.zeros((0, 3), int), BOOK, "non-empty 2-D integer array"),
        ([0, 1], BOOK, "non-empty 2-D integer array"),
        ([[0, 1]], np.zeros((2, 5), np.uint8), "codebook must be uint8 of shape"),
        ([[0, 1]], BOOK.astype(np.int64), "codebook must be uint8 of shape"),
        ([[0, 1]], np.zeros((0, 3), np.uint8), "codebook must be uint8 of shape"),
    ],
)
def test_encode_kmq_rejects_what_cannot_make_a_valid_file(indices: object, codebook: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_kmq(indices, codebook)  # type: ignore[arg-type]


def test_decode_kmq_refuses_a_bomb_before_allocating() -> None:
    header = Header(20_000, 20_000, 3, 1, 0, IndexCoding.NONE, 0).pack()
    body = header + b"\x01\x02\x03"
    data = body + pack_crc(crc32(body))  # a valid 51-byte file of 400 megapixels
    with pytest.raises(KmqError, match="exceeds max_pixels"):
        decode_kmq(data)



def test_decode_kmq_limit_can_be_raised() -> None:
    header = Header(300, 200, 3, 1, 0, IndexCoding.NONE, 0).pack()
    body = header + b"\x01\x02\x03"
    data = body + pack_crc(crc32(body))
    with pytest.raises(KmqError, match="exceeds max_pixels=1,000"):
        decode_kmq(data, max_pixels=1000)
    _, (indices, codebook) = decode_kmq(data, max_pixels=None)
    assert indices.shape == (200, 300) and not indices.any()


def test_decode_kmq_refuses_truncated_data_before_allocating() -> None:
    header = Header(5000, 5000, 3, 2, 1, IndexCoding.NONE, (5000 * 5000 + 7) // 8).pack()
    with pytest.raises(KmqError, match="truncated KMQ file"):
        decode_kmq(header + bytes(100))


class _Rows:
    """A row-strip source with a chosen dtype and shape."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array
        self.shape = array.shape

    def __getitem__(self, rows: slice) -> np.ndarray:
        return self._array[rows]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (_Rows(np.full((4, 4, 3), 300.0)), "must hold uint8 values, not float64"),
        (_Rows(np.zeros((4, 4, 5), np.uint8)), r"shape \(height, width, 1..4 channels\)"),
        (_Rows(np.zeros((0, 3, 3), np.uint8)), r"shape \(height, width, 1..4 channels\)"),
    ],
)
def test_compress_image_checks_row_sources_too(source: _Rows, message: str) -> None:
    from pil_kmq import compress_image

    with pytest.raises(ValueError, match=message):
        compress_image(source, k=4)  # type: ignore[arg-type]


def test_a_path_or_array_given_for_a_files_bytes_is_a_type_error() -> None:
    """A path's characters read as bytes gave 'not a KMQ file' for a good file."""
    from pil_kmq import read_metadata

    with pytest.raises(TypeError, match=r"decode_kmq takes a KMQ file's bytes, not str \(a path: read its bytes first"):
        decode_kmq("samples/ihc-k16.kmq")
    with pytest.raises(TypeError, match="read_metadata takes a KMQ file's bytes, not ndarray"):
        read_metadata(np.zeros(64, dtype=np.uint8))


def test_reconstruct_image_refuses_float_or_out_of_range_colours() -> None:
    """scikit-learn's float centres were cast with wrap-around: 300.5 became 44, -2 became 254."""
    from pil_kmq import reconstruct_image

    indices = np.array([[0, 1]])
    for codebook in (np.array([[300.5, 0, 0], [-2.0, 0, 0]]), np.array([[0.2, 0.5, 0.9], [0.0, 0.0, 0.0]]), np.array([[256, 0, 0], [0, 0, 0]])):
        with pytest.raises(ValueError, match="codebook must hold colours of 0 to 255 as integers"):
            reconstruct_image(indices, codebook)
    assert reconstruct_image(indices, [[1, 2, 3], [4, 5, 255]]).tolist() == [[[1, 2, 3], [4, 5, 255]]]


def test_encode_kmq_of_a_whole_result_writes_what_image_save_writes() -> None:
    """Indices and codebook given apart are coded afresh ("auto": zstd for a photo), which lost
    a psnr= search's near coding: 43 % larger on the astronaut at 35 dB."""
    import io

    from PIL import Image

    from conftest import SAMPLES

    from pil_kmq import compress_image

    pixels = np.asarray(Image.open(SAMPLES / "kodim23.png").convert("RGB"))[:160, :200]
    for options in ({"psnr": 33.0}, {"k": 16}):
        result = compress_image(pixels, **options)
        saved = io.BytesIO()
        Image.fromarray(pixels).save(saved, "KMQ", **options)
        assert encode_kmq(result) == saved.getvalue()
    with pytest.raises(TypeError, match="or compress_image's result alone"):
        encode_kmq(np.zeros((2, 2), dtype=np.uint8))


def test_size_report_of_a_files_bytes_says_it_takes_the_header() -> None:
    from pil_kmq import size_report

    with pytest.raises(TypeError, match=r"size_report takes a file's Header \(decode_kmq\(data\)\[0\]\), not bytes"):
        size_report(b"KMQ file bytes")  # type: ignore[arg-type]
