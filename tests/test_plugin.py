"""Pillow integration, in the manner of Pillow's own Tests/test_file_*.py."""

from __future__ import annotations

import copy
import gc
import io
import pickle
import threading
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, colours, kmq_bytes
from PIL import Image, ImageFile

import pil_kmq
from pil_kmq.format import HEADER_SIZE, Header, IndexCoding, crc32, pack_crc


def test_import_registers_format_extension_mime_and_codecs() -> None:
    assert "KMQ" in Image.ID
    assert Image.registered_extensions()[".kmq"] == "KMQ"
    assert Image.MIME["KMQ"] == "image/x-kmq"
    assert "KMQ" in Image.SAVE
    assert "kmq" in Image.DECODERS and "kmq" in Image.ENCODERS


def test_register_is_idempotent() -> None:
    before = list(Image.ID)
    pil_kmq.register()
    pil_kmq.register()
    assert Image.ID == before


def test_open_reports_format_mode_size_and_mime(tmp_path: Path, parrot: Image.Image) -> None:
    path = tmp_path / "parrot.kmq"
    parrot.save(path, k=16)
    with Image.open(path) as image:
        assert image.format == "KMQ"
        assert image.mode == "RGB"
        assert image.size == (100, 100)
        assert image.get_format_mimetype() == "image/x-kmq"
        assert image.kmq_header.k == 16


def test_round_trip_is_codebook_of_indices(parrot: Image.Image, parrot_kmq: bytes) -> None:
    header, (indices, codebook) = pil_kmq.decode_kmq(parrot_kmq)
    with Image.open(io.BytesIO(parrot_kmq)) as image:
        assert np.array_equal(np.asarray(image), codebook[indices])
    assert colours(Image.open(io.BytesIO(parrot_kmq))) == 16


def _save_open(target: object, image: Image.Image) -> Image.Image:
    image.save(target, "KMQ", k=8)  # type: ignore[arg-type]
    if hasattr(target, "seek"):
        target.seek(0)  # type: ignore[union-attr]
    reopened = Image.open(target)  # type: ignore[arg-type]
    reopened.load()
    return reopened


def test_round_trip_by_str_path_bytesio_and_open_file(tmp_path: Path, parrot: Image.Image) -> None:
    results = []
    results.append(_save_open(str(tmp_path / "a.kmq"), parrot))
    results.append(_save_open(tmp_path / "b.kmq", parrot))
    results.append(_save_open(io.BytesIO(), parrot))
    with open(tmp_path / "c.kmq", "w+b") as file:
        results.append(_save_open(file, parrot))
    first = results[0].tobytes()
    for image in results:
        assert image.format == "KMQ" and image.tobytes() == first
        image.close()


def test_save_by_extension_picks_kmq(tmp_path: Path, parrot: Image.Image) -> None:
    parrot.save(tmp_path / "x.kmq")
    assert (tmp_path / "x.kmq").read_bytes().startswith(b"\x89KMQ")


def test_open_is_lazy(parrot_kmq: bytes) -> None:
    with Image.open(io.BytesIO(parrot_kmq)) as image:
        assert image.tile and image.tile[0].codec_name == "kmq"
        assert image.tile[0].offset == HEADER_SIZE
        assert image._im is None  # no pixel memory until load()
        image.load()
        assert not image.tile


def test_verify_accepts_good_file_and_rejects_corrupt_one(parrot_kmq: bytes) -> None:
    with Image.open(io.BytesIO(parrot_kmq)) as image:
        image.verify()
    corrupt = bytearray(parrot_kmq)
    corrupt[len(corrupt) // 2] ^= 0x10
    with Image.open(io.BytesIO(bytes(corrupt))) as image, pytest.raises(OSError, match="checksum mismatch"):
        image.verify()


def test_open_with_formats_kmq(parrot_kmq: bytes) -> None:
    with Image.open(io.BytesIO(parrot_kmq), formats=["KMQ"]) as image:
        assert image.format == "KMQ"
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(parrot_kmq), formats=["PNG"])


def test_non_kmq_file_is_not_identified(parrot: Image.Image) -> None:
    png = io.BytesIO()
    parrot.save(png, "PNG")
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(io.BytesIO(png.getvalue()), formats=["KMQ"])
    with Image.open(io.BytesIO(png.getvalue())) as image:
        assert image.format == "PNG"


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file_raises_oserror(parrot_kmq: bytes, fraction: float) -> None:
    cut = HEADER_SIZE + int((len(parrot_kmq) - HEADER_SIZE) * fraction)
    with Image.open(io.BytesIO(parrot_kmq[:cut])) as image, pytest.raises(OSError, match="truncated"):
        image.load()


def test_every_truncation_of_a_small_file_raises_oserror(parrot: Image.Image) -> None:
    data = kmq_bytes(parrot.resize((7, 5)), k=5)
    for cut in range(len(data)):
        with pytest.raises(OSError):
            with Image.open(io.BytesIO(data[:cut])) as image:
                image.load()


def test_truncated_header_raises_oserror(parrot_kmq: bytes) -> None:
    for cut in (8, 20, HEADER_SIZE - 1):
        with pytest.raises(OSError, match="truncated KMQ header"):
            Image.open(io.BytesIO(parrot_kmq[:cut]))


def test_load_truncated_images_shows_the_rows_present(parrot: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    data = kmq_bytes(parrot, k=16, compression="none")
    full = Image.open(io.BytesIO(data))
    full.load()
    cut = HEADER_SIZE + 16 * 3 + (40 * 100 * 4) // 8 + 10  # 40 whole rows and a little more
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with Image.open(io.BytesIO(data[:cut])) as image:
        image.load()
        assert image.size == (100, 100)
        got, want = np.asarray(image), np.asarray(full)
        assert np.array_equal(got[:40], want[:40])
        assert not got[41:].any()  # rows never received stay black


def test_incremental_parser_in_small_chunks(parrot_kmq: bytes) -> None:
    reference = Image.open(io.BytesIO(parrot_kmq))
    reference.load()
    for chunk in (1, 7, 64, 1000):
        parser = ImageFile.Parser()
        for start in range(0, len(parrot_kmq), chunk):
            parser.feed(parrot_kmq[start : start + chunk])
        image = parser.close()
        assert image.tobytes() == reference.tobytes()


def test_incremental_parser_reports_incomplete_image(parrot_kmq: bytes) -> None:
    parser = ImageFile.Parser()
    parser.feed(parrot_kmq[:-5])
    with pytest.raises(OSError, match="incomplete"):
        parser.close()


def test_pickle_round_trip(parrot_kmq: bytes) -> None:
    with Image.open(io.BytesIO(parrot_kmq)) as image:
        clone = pickle.loads(pickle.dumps(image))
        assert clone.mode == image.mode and clone.size == image.size
        assert clone.tobytes() == image.tobytes()


def test_no_resource_warning_with_context_manager(tmp_path: Path, parrot: Image.Image) -> None:
    path = tmp_path / "p.kmq"
    parrot.save(path, k=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Image.open(path) as image:
            image.load()
        with Image.open(path) as image:
            pass


def test_huge_declared_size_raises_decompression_bomb_before_allocating() -> None:
    width = height = 100_000  # 10 gigapixels: more than 2 x MAX_IMAGE_PIXELS
    header = Header(width, height, 3, 2, 1, IndexCoding.NONE, (width * height + 7) // 8).pack()
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(header + b"\0" * 10))


def test_unknown_major_version_raises_clear_oserror(parrot_kmq: bytes) -> None:
    data = bytearray(parrot_kmq)
    data[8] = 2
    with pytest.raises(OSError, match="unsupported KMQ major version 2"):
        Image.open(io.BytesIO(bytes(data)))


@pytest.mark.parametrize("compression", ["none", "zlib", "zstd"])
def test_corrupt_data_raises_oserror_naming_the_checksum(parrot: Image.Image, compression: str) -> None:
    data = bytearray(kmq_bytes(parrot, k=16, compression=compression))
    data[-100] ^= 0x01
    expected = "file checksum mismatch" if compression == "none" else "strip 0: checksum mismatch"
    with Image.open(io.BytesIO(bytes(data))) as image, pytest.raises(OSError, match=expected):
        image.load()


def test_trailing_bytes_after_file_crc_are_ignored(parrot_kmq: bytes) -> None:
    with Image.open(io.BytesIO(parrot_kmq + b"trailing data")) as image:
        image.load()


def test_same_image_and_options_give_identical_bytes_on_any_thread(parrot: Image.Image) -> None:
    expected = kmq_bytes(parrot, k=32, seed=3)
    results: list[bytes] = []
    # One Image object per thread: Pillow's Image.save keeps per-call state on the object.
    copies = [parrot.copy() for _ in range(4)]
    threads = [threading.Thread(target=lambda im=im: results.append(kmq_bytes(im, k=32, seed=3))) for im in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 4


def test_default_options_are_k16_seed0_auto_which_is_zstd_for_a_photo(parrot: Image.Image) -> None:
    assert kmq_bytes(parrot) == kmq_bytes(parrot, k=16, seed=0, compression="auto") == kmq_bytes(parrot, k=16, compression="zstd")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 0}, "k must be an int from 1 to 65,536, not 0"),
        ({"k": 70000}, "k must be an int from 1 to 65,536, not 70000"),
        ({"k": "16"}, "k must be an int from 1 to 65,536, not '16'"),
        ({"k": 2.0}, "k must be an int"),
        ({"k": True}, "k must be an int"),
        ({"seed": -1}, "seed must be an int from 0"),
        ({"seed": "x"}, "seed must be an int"),
        ({"compression": "zip"}, "compression must be one of 'auto', 'none', 'zlib', 'zstd', 'near', not 'zip'"),
        ({"compression": None}, "compression must be one of"),
    ],
)
def test_bad_option_raises_valueerror_before_writing(parrot: Image.Image, options: dict[str, object], message: str) -> None:
    out = io.BytesIO()
    with pytest.raises(ValueError, match=message):
        parrot.save(out, "KMQ", **options)
    assert out.getvalue() == b""


def test_numpy_integer_k_is_accepted(parrot: Image.Image) -> None:
    assert kmq_bytes(parrot, k=np.int64(8)) == kmq_bytes(parrot, k=8)


def test_k1_and_k65536(parrot: Image.Image) -> None:
    with Image.open(io.BytesIO(kmq_bytes(parrot, k=1))) as image:
        assert colours(image) == 1
    with Image.open(io.BytesIO(kmq_bytes(parrot, k=65536))) as image:
        assert image.tobytes() == parrot.tobytes()  # 3,025 colours < k: lossless


def test_l_image_is_stored_with_one_channel(ihc: Image.Image) -> None:
    grey = ihc.convert("L")
    data = kmq_bytes(grey, k=256)
    assert data[10] == 1  # channels
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "L" and image.tobytes() == grey.tobytes()


def test_mode_1_decodes_to_the_same_pixels(parrot: Image.Image) -> None:
    bilevel = parrot.convert("1")
    with Image.open(io.BytesIO(kmq_bytes(bilevel, k=2))) as image:
        assert image.mode == "L"
        assert np.array_equal(np.asarray(image), np.asarray(bilevel.convert("L")))


def test_palette_image_without_transparency_is_stored_losslessly(palette_image: Image.Image) -> None:
    data = kmq_bytes(palette_image, k=16)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGB"
        assert image.tobytes() == palette_image.convert("RGB").tobytes()
        assert image.kmq_header.k == 12


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "CMYK", "YCbCr", "LAB", "HSV"])
def test_unsupported_mode_raises_valueerror_naming_it(parrot: Image.Image, mode: str) -> None:
    image = parrot.convert("L").convert(mode) if mode in {"I;16", "I", "F"} else parrot.convert(mode)
    with pytest.raises(ValueError, match=f"mode '{mode}'"):
        kmq_bytes(image, k=4)


def test_decoder_reads_all_channel_layouts() -> None:
    for channels, mode in [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")]:
        codebook = np.arange(2 * channels, dtype=np.uint8).reshape(2, channels) * 40
        indices = np.array([[0, 1, 1], [1, 0, 0]])
        data = pil_kmq.encode_kmq(indices, codebook)
        with Image.open(io.BytesIO(data)) as image:
            assert image.mode == mode
            expected = codebook[indices]
            assert np.array_equal(np.asarray(image).reshape(expected.shape), expected)


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (bytes(3) + bytes([0b11000000]), "index 3 at row 0, column 12 is out of range for k=3"),  # the last index 3, k = 3
        (bytes(3) + bytes([0b01000001]), "padding bits are not zero"),  # 13 indices of 2 bits, then 6 bits of padding
    ],
)
def test_bad_uncoded_stream_is_rejected_held_whole_or_fed_in_bytes(stream: bytes, message: str) -> None:
    header = Header(13, 1, 3, 3, 2, IndexCoding.NONE, 4).pack()
    body = header + bytes(9) + stream
    data = body + pack_crc(crc32(body))
    with Image.open(io.BytesIO(data)) as image, pytest.raises(OSError, match=message):
        image.load()  # the stream is all in hand: decoded in one go
    parser = ImageFile.Parser()
    with pytest.raises(OSError, match=message):
        for at in range(len(data)):  # byte by byte: decoded piece by piece as the bytes come
            parser.feed(data[at : at + 1])
        parser.close()


def test_a_loaded_image_and_its_decoder_are_freed_without_the_garbage_collector(parrot_kmq: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reference cycle through the decoder kept each image's pixel memory until the cyclic
    collector ran: a batch of large images piled up, and every load wrote into fresh pages."""
    decoders = []
    init = pil_kmq.plugin.KmqDecoder.init

    def watched(self: pil_kmq.plugin.KmqDecoder, args: tuple) -> None:
        decoders.append(weakref.ref(self))
        init(self, args)

    monkeypatch.setattr(pil_kmq.plugin.KmqDecoder, "init", watched)
    gc.collect()
    gc.disable()
    try:
        image = Image.open(io.BytesIO(parrot_kmq))
        image.load()
        loaded = weakref.ref(image)
        del image
        assert loaded() is None
        assert len(decoders) == 1 and decoders[0]() is None
    finally:
        gc.enable()


def test_verify_after_load_raises_runtimeerror_like_pillow(parrot_kmq: bytes) -> None:
    with Image.open(io.BytesIO(parrot_kmq)) as image:
        image.load()
        with pytest.raises(RuntimeError, match="verify must be called directly after open"):
            image.verify()


def test_resaving_a_kmq_image_keeps_its_k_and_colours(parrot: Image.Image) -> None:
    with Image.open(io.BytesIO(kmq_bytes(parrot, k=200))) as image:
        image.load()
        again = kmq_bytes(image)
    with Image.open(io.BytesIO(again)) as resaved:
        assert resaved.kmq_header.k == image.kmq_header.k
        assert resaved.tobytes() == image.tobytes()


def test_reading_never_imports_what_only_saving_needs(tmp_path: Path) -> None:
    """scipy.spatial (the k-means' k-d trees) took a third of `import pil_kmq`: a program that
    only reads KMQ files does not import it."""
    import subprocess
    import sys

    path = tmp_path / "x.kmq"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path, k=2)
    code = f"import sys; from PIL import Image; import pil_kmq; Image.open({str(path)!r}).load(); print('scipy.spatial' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("copy_of", [lambda image: pickle.loads(pickle.dumps(image)), copy.deepcopy], ids=["pickle", "deepcopy"])
def test_an_image_pickled_by_a_process_pool_keeps_its_header_and_resaves_with_its_k(copy_of: Callable[[Image.Image], Image.Image]) -> None:
    """Pillow pickles mode, size, info and pixels only: kmq_header went missing, and a re-save
    (which keeps k by default) failed with an AttributeError."""
    data = kmq_bytes(Image.open(SAMPLES / "ihc.png").convert("RGB"), k=16)
    with Image.open(io.BytesIO(data)) as opened:
        copied = copy_of(opened)
        assert copied.kmq_header == opened.kmq_header
        assert copied.tobytes() == opened.tobytes()
    out = io.BytesIO()
    copied.save(out, "KMQ")
    with Image.open(io.BytesIO(out.getvalue())) as again:
        assert again.kmq_header.k == 16
        assert again.tobytes() == copied.tobytes()


def test_near_asked_for_more_colours_than_it_codes_warns_and_writes_zstd() -> None:
    pixels = np.random.default_rng(5).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    with pytest.warns(UserWarning, match=r'compression="near" codes at most 4,096 colours: these 5,000 are coded with zstd'):
        data = kmq_bytes(image, k=5000, compression="near")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), np.asarray(Image.open(io.BytesIO(kmq_bytes(image, k=5000, compression="zstd"))).convert("RGB")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kmq_bytes(image, k=4096, compression="near")  # near codes it: no warning


def test_lossless_psnr_of_more_colours_than_a_file_holds_says_so_at_once() -> None:
    pixels = np.random.default_rng(6).integers(0, 256, (300, 300, 3), dtype=np.uint8)  # ~89,800 colours
    with pytest.raises(ValueError, match=r"psnr=inf \(lossless\) needs an entry for each of the image's 89,7\d\d colours: more than k=65,536"):
        kmq_bytes(Image.fromarray(pixels), psnr=float("inf"))
