"""near_rans and near_flat strips (spec 7.2, "Near" and "Flat stretches"): a decoder written
here from the spec's words agrees with the compiled one, every read path decodes them, and the
reader rules refuse what they name."""

from __future__ import annotations

import functools
import io
import warnings

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image, ImageFile

from pil_kmq import KmqError, codec, decode_kmq, encode_kmq, jobs, near, stream
from pil_kmq.coding import looks_drawn, parse_table
from pil_kmq.format import NEAR_METHODS, StripMethod, crc32, pack_crc


def spec_decode(payload: bytes, codebook: np.ndarray, width: int, rows: int, flat: bool = False) -> np.ndarray:
    """The spec's decoding of a near_rans payload (near_flat's if `flat`), step by step, in plain Python."""
    k, channels = codebook.shape
    colour = [list(map(int, entry)) + [0] * (4 - channels) for entry in codebook]

    def d(e: int, f: int) -> int:
        return sum((colour[e][j] - colour[f][j]) ** 2 for j in range(4))

    at, tables = 0, []
    for _ in range(50 if flat else 48):
        count = payload[at]
        at += 1
        frequencies = []
        for _ in range(count):
            value = payload[at] & 0x7F
            if payload[at] & 0x80:
                value += 128 * payload[at + 1]
                at += 1
            at += 1
            frequencies.append(value)
        tables.append(frequencies)
    x = int.from_bytes(payload[at : at + 4], "big")
    words = [int.from_bytes(payload[i : i + 2], "big") for i in range(at + 4, len(payload), 2)]

    def read(context: int) -> int:  # coder steps 2-4
        nonlocal x
        f = tables[context]
        assert f, "unused context"
        slot = x % 4096
        t = next(t for t in range(len(f)) if sum(f[:t]) <= slot < sum(f[: t + 1]))
        x = f[t] * (x // 4096) + slot - sum(f[:t])
        if x < 1 << 16:
            x = x * 65536 + words.pop(0)
        if t < 16:
            return t
        m = 4 + (t - 16) // 2
        e = m - 1
        s = 2**m + (t - 16) % 2 * 2 ** (m - 1) + x % 2**e
        x //= 2**e
        if x < 1 << 16:
            x = x * 65536 + words.pop(0)
        return s

    def index(s: int, L: int, A: int, B: int, C: int) -> int:  # symbol to index
        N = []
        for value in (L, A, C, B):
            if value not in N:
                N.append(value)
        if s < len(N):
            return N[s]
        G = [min(max(colour[L][j] + colour[A][j] - colour[B][j], min(colour[L][j], colour[A][j])), max(colour[L][j], colour[A][j])) for j in range(4)]
        P = min((L, A, B, C), key=lambda e: sum((G[j] - colour[e][j]) ** 2 for j in range(4)))  # min keeps the first
        O = sorted(range(k), key=lambda e: (d(P, e), e) if k <= 1024 else (abs(e - P), e))
        return [e for e in O if e not in N][s - len(N)]

    v = [[0] * width for _ in range(rows)]
    for y in range(rows):
        col = 0
        while col < width:
            A = v[y - 1][col] if y > 0 else None
            L = v[y][col - 1] if col > 0 else (A if y > 0 else 0)
            if y == 0:
                A = L
            B = v[y - 1][col - 1] if y > 0 and col > 0 else A
            C = v[y - 1][col + 1] if y > 0 and col + 1 < width else A
            if flat and y > 0 and L == A == B == C:
                length = 1
                while col + length < width and length < 4095 and (col + length + 1 == width or v[y - 1][col + length + 1] == L):
                    length += 1
                if length >= 16:
                    stop = read(48)
                    assert stop <= length, "a stretch past its length"
                    same = length if stop == 0 else length - (stop + 1) // 2 if stop % 2 else stop // 2 - 1
                    for _ in range(same):
                        v[y][col] = L
                        col += 1
                    if stop:
                        v[y][col] = index(read(49) + 1, L, L, L, L)
                        col += 1
                    continue
            distance = d(B, C)
            level = 0 if distance <= 16 else 1 if distance <= 256 else 2
            context = 3 * ((L == A) + 2 * (A == C) + 4 * (B == A) + 8 * (B == L)) + level
            v[y][col] = index(read(context), L, A, B, C)
            col += 1
    assert not words and x == 1 << 16
    return np.array(v)


def _image(rng: np.random.Generator, height: int, width: int, k: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth-ish indices (a photo's neighbours agree often) and a random codebook."""
    codebook = rng.integers(0, 256, (k, channels), dtype=np.uint8)
    base = rng.integers(0, k, (height, width))
    smooth = np.where(rng.random((height, width)) < 0.6, np.roll(base, 1, axis=1), base)
    return smooth.astype(near.index_dtype(k)), codebook


@pytest.mark.parametrize(
    ("k", "channels", "shape"),
    [(2, 1, (5, 7)), (5, 3, (1, 9)), (16, 2, (9, 1)), (64, 4, (12, 11)), (256, 3, (14, 23)), (257, 1, (6, 13)), (700, 3, (9, 21)), (1024, 4, (7, 30)), (1025, 3, (6, 17)), (3000, 2, (5, 24)), (4096, 4, (4, 31))],
)
def test_compiled_decoder_agrees_with_the_spec_written_out(k: int, channels: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(k)
    indices, codebook = _image(rng, *shape, k, channels)
    payload = near.encode_near(indices, near.Palette(codebook))
    assert np.array_equal(spec_decode(payload, codebook, shape[1], shape[0]), indices)
    strip = near.NearStrip(payload, near.Palette(codebook), shape[1], k, "strip")
    out = np.empty(indices.size, dtype=near.index_dtype(k))
    for start in range(0, out.size, 5):  # pieces that end inside rows
        strip.decode(out[start : start + 5])
    strip.finish()
    assert np.array_equal(out.reshape(shape), indices)


def _blocks(rng: np.random.Generator, height: int, width: int, k: int) -> np.ndarray:
    """A drawing's indices: flat rectangles (all four neighbours one entry), a few stray pixels."""
    indices = np.zeros((height, width), dtype=near.index_dtype(k))
    for _ in range(12):
        top, left = rng.integers(0, height), rng.integers(0, width)
        indices[top : top + rng.integers(1, height), left : left + rng.integers(1, width)] = rng.integers(0, k)
    stray = rng.random((height, width)) < 0.01
    indices[stray] = rng.integers(0, k, int(stray.sum()))
    return indices


@pytest.mark.parametrize(("k", "shape"), [(2, (40, 33)), (16, (37, 64)), (256, (30, 50)), (1500, (25, 41))])
def test_flat_runs_decode_as_the_spec_says_in_pieces_of_any_length(k: int, shape: tuple[int, int]) -> None:
    """Flat pixels coded token 0 take the decoder's short way; the pixels are the spec's,
    whatever pieces they are asked for in, and a stream cut inside them is refused."""
    rng = np.random.default_rng(k + 1)
    indices = _blocks(rng, *shape, k)
    codebook = rng.integers(0, 256, (k, 3), dtype=np.uint8)
    payload = near.encode_near(indices, near.Palette(codebook))
    assert np.array_equal(spec_decode(payload, codebook, shape[1], shape[0]), indices)
    for piece in (1, 7, shape[1] - 1, shape[1] + 3, indices.size):
        strip = near.NearStrip(payload, near.Palette(codebook), shape[1], k, "strip")
        out = np.empty(indices.size, dtype=near.index_dtype(k))
        for start in range(0, out.size, piece):
            strip.decode(out[start : start + piece])
        strip.finish()
        assert np.array_equal(out.reshape(shape), indices)
    assert len(payload) >= 10
    cut = near.NearStrip(payload[:-2], near.Palette(codebook), shape[1], k, "strip")
    with pytest.raises(KmqError, match="strip: "):
        cut.decode(np.empty(indices.size, dtype=near.index_dtype(k)))
        cut.finish()


def _label_map(rng: np.random.Generator, height: int, width: int, k: int, regions: int = 12) -> np.ndarray:
    """A segmentation's indices: regions of the nearest of a few seeds, whose borders slant
    from row to row, so that flat stretches long and short lie between them."""
    seeds = rng.integers(0, (height, width), (regions, 2))
    y, x = np.mgrid[0:height, 0:width]
    nearest = np.argmin((y[..., None] - seeds[:, 0]) ** 2 + (x[..., None] - seeds[:, 1]) ** 2, axis=2)
    return (nearest % k).astype(near.index_dtype(k))


def _stretch_symbols(indices: np.ndarray, palette: near.Palette) -> np.ndarray:
    """The tokens near_flat codes in context 48, one a stretch."""
    tokens, contexts = np.empty(2 * indices.size, np.uint8), np.empty(2 * indices.size, np.uint8)
    used = near._symbols(indices, *palette.tables, tokens, np.empty(2 * indices.size, np.uint16), contexts, True)
    return tokens[:used][contexts[:used] == near.STRETCH_CONTEXT]


@pytest.mark.parametrize(("k", "shape"), [(2, (40, 33)), (5, (37, 64)), (16, (30, 150)), (256, (20, 90)), (1500, (12, 70)), (3, (3, 9000))])
def test_near_flat_decodes_as_the_spec_says_in_pieces_of_any_length(k: int, shape: tuple[int, int]) -> None:
    """Stretches, the pixels that stop them short (near either end or between) and stretches
    cut at 4,095 pixels (the 9,000-pixel rows, whose first is flat) decode as the spec's words
    say, whatever pieces they are asked for in (a piece may end inside a stretch, or just
    before the pixel that stops it)."""
    rng = np.random.default_rng(k + 7)
    indices = _label_map(rng, *shape, k) if k != 1500 else _blocks(rng, *shape, k)
    if shape[1] > 4095:
        indices[0] = indices[1, 0] = 0  # row 1 starts with a stretch of 4,095 pixels
    indices[shape[0] // 2, ::37] = 1  # stray pixels stop stretches short
    codebook = rng.integers(0, 256, (k, 3), dtype=np.uint8)
    palette = near.Palette(codebook)
    payload = near.encode_near(indices, palette, stretches=True)
    assert (_stretch_symbols(indices, palette) > 0).any() and (_stretch_symbols(indices, palette) == 0).any()
    assert np.array_equal(spec_decode(payload, codebook, shape[1], shape[0], flat=True), indices)
    for piece in (1, 5, 17, shape[1] - 1, shape[1] + 3, indices.size):
        strip = near.NearStrip(payload, palette, shape[1], k, "strip", stretches=True)
        out = np.empty(indices.size, dtype=near.index_dtype(k))
        for start in range(0, out.size, piece):
            strip.decode(out[start : start + piece])
        strip.finish()
        assert np.array_equal(out.reshape(shape), indices)


def test_a_flat_row_of_9000_pixels_is_three_stretches_the_first_two_of_4095() -> None:
    indices = np.zeros((2, 9000), dtype=np.uint8)
    codebook = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)
    palette = near.Palette(codebook)
    assert list(_stretch_symbols(indices, palette)) == [0, 0, 0]  # 4,095 + 4,095 + 810, none stops short
    assert near._stretch(indices[0], 0, 9000, 0, -1) == (4095, 9000) and near._stretch(indices[0], 8190, 9000, 0, 9000) == (810, 9000)
    payload = near.encode_near(indices, palette, stretches=True)
    assert np.array_equal(spec_decode(payload, codebook, 9000, 2, flat=True), indices)


def test_a_stretch_length_from_the_kept_end_equals_a_fresh_scan() -> None:
    """_stretch reuses the end it found for the row and value: along a row, left to right, its
    lengths must be a fresh scan's, or the encoder and a decoder keeping other ends would differ."""
    rng = np.random.default_rng(9)
    for _ in range(300):
        width = int(rng.integers(17, 300))
        above = np.where(rng.random(width) < rng.choice([0.01, 0.05, 0.3]), rng.integers(0, 3, width), 0).astype(np.uint8)
        seen = -1
        for x in range(width):
            length, end = near._stretch(above, x, width, 0, seen)
            assert length == near._stretch(above, x, width, 0, -1)[0]
            seen = end


@pytest.mark.parametrize(("regions", "seed"), [(12, 3), (40, 3), (200, 3), (40, 8)])
def test_near_flat_codes_a_label_map_smaller_than_near_rans(regions: int, seed: int) -> None:
    indices = _label_map(np.random.default_rng(2), 300, 400, 12, regions)
    palette = near.Palette(np.random.default_rng(seed).integers(0, 256, (12, 3), dtype=np.uint8))
    assert len(near.encode_near(indices, palette, stretches=True)) < 0.99 * len(near.encode_near(indices, palette))


def test_the_stretch_table_may_use_every_token_whatever_k_is() -> None:
    """Context 48 holds a stretch's symbol (up to 4,095): 32 tokens even at k = 2; the
    interrupt table, 49, keeps token_limit."""
    unused = b"\x00"
    full = bytes([32]) + b"\x00" * 31 + b"\x80\x20"
    frequency, _, _, used = near.parse_model(np.frombuffer(unused * 48 + full + unused, np.uint8), "strip", 2, stretches=True)
    assert frequency.shape == (50, 32) and frequency[48, 31] == 4096 and used == 48 + len(full) + 1
    with pytest.raises(KmqError, match="context 48 has 33 tokens, at most 32"):
        near.parse_model(np.frombuffer(unused * 48 + bytes([33]) + b"\x00" * 32 + b"\x80\x20" + unused, np.uint8), "strip", 2, stretches=True)
    with pytest.raises(KmqError, match="context 49 has 25 tokens, at most 24"):
        near.parse_model(np.frombuffer(unused * 49 + bytes([25]) + b"\x00" * 24 + b"\x80\x20", np.uint8), "strip", 2, stretches=True)


def test_the_writer_stores_near_flat_only_where_it_is_shorter() -> None:
    """near_flat is tried on a small strip, or where a quarter of the pixels or more equal
    their four neighbours (a label map, specks on a flat field), and kept only where it is
    shorter than near_rans; a strip of fewer flat pixels (a photo's at 256 colours) is near_rans."""
    from pil_kmq import coding

    rng = np.random.default_rng(4)
    codebook = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    palette = near.Palette(codebook)
    specks = np.zeros((300, 400), dtype=np.uint8)
    specks[rng.random(specks.shape) < 0.003] = 5  # a speck mid-stretch costs near_flat more
    noisy = rng.integers(0, 12, (300, 400)).astype(np.uint8)
    for indices in (_label_map(rng, 60, 100, 12), _label_map(rng, 300, 400, 12, 40), specks, noisy):
        strip = coding._near_coded(indices, palette)
        flat = bytes([StripMethod.NEAR_FLAT]) + near.encode_near(indices, palette, stretches=True)
        plain = bytes([StripMethod.NEAR_RANS]) + near.encode_near(indices, palette)
        tried = indices.size <= coding.SMALL_STRIP_PIXELS or near.flat_share(indices) >= coding.NEAR_FLAT_SHARE
        assert strip == (min(plain, flat, key=len) if tried else plain)
    assert near.flat_share(noisy) < coding.NEAR_FLAT_SHARE <= near.flat_share(specks)
    assert coding._near_coded(_label_map(rng, 300, 400, 12, 40), palette)[0] == StripMethod.NEAR_FLAT


@pytest.mark.parametrize(("k", "highest"), [(256, 22), (512, 24), (1024, 26), (2048, 28), (4096, 30)])
def test_symbols_past_fifteen_use_extra_bits_and_come_back(k: int, highest: int) -> None:
    """A far colour (rank > 15) is coded as a token of 16 … 31 and its extra bits (up to 10);
    the top octave's tokens hold symbols of k / 2 … k - 1."""
    rng = np.random.default_rng(3)
    codebook = rng.integers(0, 256, (k, 3), dtype=np.uint8)
    indices = rng.integers(0, k, (6, 80)).astype(near.index_dtype(k))  # no neighbour agrees: high ranks
    palette = near.Palette(codebook)
    tokens = np.empty(indices.size, np.uint8)
    near._symbols(indices, *palette.tables, tokens, np.empty(indices.size, np.uint16), np.empty_like(tokens), False)
    assert tokens.max() in (highest, highest + 1)
    payload = near.encode_near(indices, palette)
    assert np.array_equal(spec_decode(payload, codebook, 80, 6), indices)


@pytest.mark.parametrize(("k", "limit"), [(2, 24), (256, 24), (257, 26), (512, 26), (513, 28), (1024, 28), (1025, 30), (2048, 30), (2049, 32), (4096, 32)])
def test_a_context_may_have_the_tokens_of_every_symbol_below_2_to_the_bits_and_no_more(k: int, limit: int) -> None:
    assert near.token_limit(k) == limit
    table = bytes([limit]) + b"\x00" * (limit - 1) + b"\x80\x20"  # the last token takes all 4,096
    unused = b"\x00" * (near.CONTEXTS - 1)
    frequency, _, _, used = near.parse_model(np.frombuffer(table + unused, np.uint8), "strip", k)
    assert used == len(table) + len(unused) and frequency[0, limit - 1] == 4096
    over = bytes([limit + 1]) + b"\x00" * limit + b"\x80\x20"
    with pytest.raises(KmqError, match=f"context 0 has {limit + 1} tokens, at most {limit} for k = {k}"):
        near.parse_model(np.frombuffer(over + unused, np.uint8), "strip", k)


@pytest.fixture(scope="module", params=[256, 600])
def photo_near(request: pytest.FixtureRequest) -> bytes:
    """A photo of several strips stored near_rans, at 256 colours (byte indices) and at 600."""
    out = io.BytesIO()
    _enlarged_photo().save(out, "KMQ", k=request.param, compression="near")
    return out.getvalue()


def _enlarged_photo() -> Image.Image:
    """The IHC crop enlarged 3 x 5 with a little noise: a photo of 1,031,715 pixels (no part
    repeats, as tiles of one image would: zstd finds those, see test_coding)."""
    with Image.open(SAMPLES / "ihc.png") as image:
        rgb = image.convert("RGB")
    large = np.asarray(rgb.resize((rgb.width * 3, rgb.height * 5), Image.Resampling.BICUBIC), dtype=np.float64)
    noisy = large + np.random.default_rng(5).normal(0, 2, large.shape)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


def strip_methods(data: bytes) -> list[StripMethod]:
    header, _ = decode_kmq(data)
    start = header.index_stream_offset
    table = parse_table(data[start:], header.height, header.width, header.bits_per_index, header.index_stream_length)
    offsets = start + 4 + 12 * len(table.lengths) + np.concatenate([[0], np.cumsum(table.lengths)[:-1]]).astype(int)
    return [StripMethod(data[offset]) for offset in offsets]


def test_a_photo_saved_near_has_near_rans_strips_and_version_1_4_or_above_256_entries_1_6(photo_near: bytes) -> None:
    """A photo's strips have few flat pixels: near_flat is not tried (coding.NEAR_FLAT_SHARE)."""
    methods = strip_methods(photo_near)
    assert len(methods) > 1 and set(methods) == {StripMethod.NEAR_RANS}
    header = decode_kmq(photo_near)[0]
    assert header.k in (256, 600) and header.version_minor == (6 if header.k > 256 else 5 if header.codebook_stream_length else 4)


def test_every_read_path_gives_the_same_pixels(photo_near: bytes, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    header, quantized = decode_kmq(photo_near)
    expected = quantized.codebook[quantized.indices]
    with Image.open(io.BytesIO(photo_near)) as image:
        assert np.array_equal(np.asarray(image), expected)
    parser = ImageFile.Parser()
    for at in range(0, len(photo_near), 977):  # fed in odd chunks
        parser.feed(photo_near[at : at + 977])
    assert np.array_equal(np.asarray(parser.close()), expected)
    with stream.open_kmq(io.BytesIO(photo_near)) as reader:
        assert np.array_equal(reader.read_rows(300, 700), expected[300:700])
    # Strips bigger than a piece are decoded piece by piece, by both the pushed and pulled paths.
    monkeypatch.setattr("pil_kmq.decoding.BLOCK_PIXELS", 5000)
    monkeypatch.setattr("pil_kmq.codec.BLOCK_PIXELS", 5000)
    monkeypatch.setattr("pil_kmq.stream.BLOCK_PIXELS", 5000)
    with Image.open(io.BytesIO(photo_near)) as image:
        assert np.array_equal(np.asarray(image), expected)
    with stream.open_kmq(io.BytesIO(photo_near)) as reader:
        assert np.array_equal(reader.read_rows(0, header.height), expected)


@pytest.mark.parametrize("k", [2, 255, 257, 600, 1024])
@pytest.mark.parametrize("halves", [False, True])
def test_the_tables_hold_every_entry_s_order_by_distance_made_whole_or_in_halves(k: int, halves: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """order[p] = the entries by (squared distance from entry p, index), position its inverse,
    levels by distance: the same made whole on one thread or in two halves of the rows side by
    side (a codebook with repeated entries, so that distances tie)."""
    monkeypatch.setattr(near, "SPLIT_TABLES_K", 1 if halves else near.MAX_K)  # k = 2 is split too
    split = []
    monkeypatch.setattr(near, "side_by_side", lambda first, second: split.append(1) or jobs.side_by_side(first, second))
    rng = np.random.default_rng(k)
    codebook = rng.integers(0, 256, (k, 3), dtype=np.uint8)
    codebook[k // 2 :: 3] = codebook[: len(codebook[k // 2 :: 3])]
    colours, levels, order, position = near.palette_tables(codebook)
    assert len(split) == halves
    distance = ((codebook[:, None, :].astype(np.int64) - codebook[None, :, :]) ** 2).sum(axis=2)
    expected = np.argsort(distance, axis=1, kind="stable")
    assert np.array_equal(order, expected) and order.dtype == near.index_dtype(k)
    assert np.array_equal(np.take_along_axis(position, order, axis=1), np.broadcast_to(np.arange(k), (k, k)))
    assert np.array_equal(levels, (distance > 16).astype(np.uint8) + (distance > 256))
    assert np.array_equal(colours[:, :3], codebook) and not colours[:, 3].any()


def test_a_reader_and_a_writer_make_the_tables_before_the_strips_go_to_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above SPLIT_TABLES_K entries the tables are made before the strips are handed out
    (where their halves can run side by side), not in the first strip's job while the other
    waits: a writer before encode_strips, Pillow's reader and a row reader before run_jobs."""
    events = []
    original = near.palette_tables
    monkeypatch.setattr(near, "palette_tables", lambda codebook: events.append("tables") or original(codebook))
    for owner, name in ((codec, "encode_strips"), (codec, "run_jobs"), (stream, "run_jobs")):
        monkeypatch.setattr(owner, name, functools.partial(lambda original, label, *args, **kwargs: events.append(label) or original(*args, **kwargs), getattr(owner, name), name))
    indices, codebook = _image(np.random.default_rng(3), 600, 400, 300, 3)
    data = encode_kmq(indices, codebook, compression="near")
    assert len(strip_methods(data)) > 1 and set(strip_methods(data)) <= set(NEAR_METHODS)
    assert events[:2] == ["tables", "encode_strips"]
    expected = codebook[indices]
    events.clear()
    with Image.open(io.BytesIO(data)) as loaded:
        assert np.array_equal(np.asarray(loaded), expected)
    assert events[:2] == ["tables", "run_jobs"] and events.count("tables") == 1
    events.clear()
    with stream.open_kmq(io.BytesIO(data)) as reader:  # some rows: strips read by their own jobs
        assert np.array_equal(reader.read_rows(1, 600), expected[1:])
    assert events[:2] == ["tables", "run_jobs"] and events.count("tables") == 1


def test_a_drawing_keeps_what_zstd_makes_of_it_when_that_is_smaller() -> None:
    """Text repeats far apart, which zstd finds and the near model does not: compression='near'
    must never make a drawing larger than 'zstd' does."""
    from PIL import ImageDraw

    image = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"  # two colours: stored exactly
    for line in range(20):
        draw.text((5, 5 + 14 * line), "the quick brown fox jumps over the lazy dog 0123456789", fill="black")
    sizes = {}
    for compression in ("zstd", "near"):
        out = io.BytesIO()
        image.save(out, "KMQ", k=16, compression=compression)
        sizes[compression] = len(out.getvalue())
        with Image.open(out) as back:
            assert back.tobytes() == image.tobytes()
    assert sizes["near"] <= sizes["zstd"]


@pytest.mark.parametrize("k", [1024, 1025, 4096, 4097])
def test_up_to_4096_entries_are_coded_near_and_more_fall_back_to_runs(k: int) -> None:
    rng = np.random.default_rng(0)
    indices, codebook = _image(rng, 150, 140, k, 3)  # 21,000 pixels: more than a small strip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = encode_kmq(indices, codebook, compression="near")
    assert bool(NEAR_METHODS & set(strip_methods(data))) == (k <= near.MAX_K)
    assert [str(warning.message) for warning in caught] == ([] if k <= near.MAX_K else [f'compression="near" codes at most 4,096 colours: these {k:,} are coded with zstd'])
    assert np.array_equal(decode_kmq(data)[1].indices, indices)


def _with_strip(data: bytes, payload: bytes) -> bytes:
    """A one-strip file with its strip's payload replaced, lengths and checksums mended."""
    header, _ = decode_kmq(data)
    start = header.index_stream_offset
    strip = bytes([StripMethod.NEAR_RANS]) + payload
    body = bytearray(data[:start]) + data[start : start + 4] + len(strip).to_bytes(8, "big") + crc32(strip).to_bytes(4, "big") + strip
    body[32:40] = (len(body) - start).to_bytes(8, "big")
    body[40:44] = crc32(bytes(body[:40])).to_bytes(4, "big")
    return bytes(body) + pack_crc(crc32(bytes(body)))


@pytest.fixture(scope="module")
def small_near() -> tuple[bytes, bytes]:
    """Vector P's file and its near payload."""
    from test_spec_vectors import VECTORS

    data = VECTORS["P"][1]
    return data, data[-73:-4]


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (lambda p: p[:30], "model cut short|not a 4-byte state"),
        (lambda p: bytes([25]) + p[1:], "25 tokens, at most 24"),
        (lambda p: p[:5] + b"\x02\xff\xff" + p[8:], "more than 2 bytes"),
        (lambda p: p[:-4] + (0xFFFF).to_bytes(4, "big"), "initial state 65535 is below 65536"),
        (lambda p: p + b"\x00", "not a 4-byte state and 2-byte words"),
        (lambda p: p + b"\x12\x34", "words follow the last pixel"),
        (lambda p: p[:-4] + (0x00735260).to_bytes(4, "big"), "ends in state|rank past|context the model has no"),
        (lambda p: p[:55] + b"\x00" + p[63:], "falls in a context the model has no frequencies for"),
    ],
)
def test_a_broken_near_strip_is_refused_for_its_rule(small_near: tuple[bytes, bytes], change: object, rule: str) -> None:
    data, payload = small_near
    assert payload[55:63] == bytes.fromhex("049a13b30600b306")  # context 45's table
    broken = _with_strip(data, change(payload))  # type: ignore[operator]
    with pytest.raises(KmqError, match=rule):
        decode_kmq(broken)
    with Image.open(io.BytesIO(broken)) as image, pytest.raises(OSError, match=rule):
        image.load()


def test_the_writer_cuts_a_drawing_into_near_strips_of_at_most_2_22_pixels() -> None:
    """strip_height_for rounds rows up: 5000 x 1677 would give strips of 4,195,000 pixels,
    which could then never be stored near_rans."""
    from pil_kmq.coding import writer_strips

    drawn = np.zeros((40, 5000), dtype=np.uint8)
    assert writer_strips(drawn, 5000, 1677, 8)[0] * 5000 > 1 << 22
    assert writer_strips(drawn, 5000, 1677, 8, StripMethod.NEAR_FLAT)[0] * 5000 <= 1 << 22


def test_near_needs_at_most_4096_entries_and_2_22_pixels_a_strip() -> None:
    from pil_kmq.decoding import StripDecoder

    palette = near.Palette(np.zeros((2, 3), np.uint8))
    with pytest.raises(KmqError, match="near_rans needs k <= 4096, not 4097"):
        StripDecoder(4, 0, 4, 4097, 13, 10, "strip", lambda at, size: b"\x04"[at : at + size], palette=palette)
    with pytest.raises(KmqError, match="over 4,194,304"):
        StripDecoder((1 << 22) + 1, 0, (1 << 22) + 1, 2, 1, 10, "strip", lambda at, size: b"\x04"[at : at + size], palette=palette)


def _strip_count(data: bytes) -> int:
    header, _ = decode_kmq(data)
    start = header.index_stream_offset
    return len(parse_table(data[start:], header.height, header.width, header.bits_per_index, header.index_stream_length).lengths)


def test_a_photo_that_only_looks_drawn_keeps_a_photos_strips_with_near() -> None:
    """At 16 grey levels a smooth noisy field has few literals (it looks drawn) but codes smaller
    near_rans: it gets the two strips a photo of its size gets, one per decoding worker; a
    drawing whose rows zstd codes smaller keeps one strip."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:512, 0:768]
    photo = np.clip(np.rint(7.5 + 7 * np.sin(x / 37.0) * np.cos(y / 23.0) + rng.normal(0, 0.1, x.shape)), 0, 15).astype(np.uint8)
    codebook = np.repeat(np.linspace(0, 255, 16).astype(np.uint8)[:, None], 3, axis=1)
    assert looks_drawn(photo[:341])
    assert _strip_count(encode_kmq(photo, codebook, "zstd")) == 1
    near_file = encode_kmq(photo, codebook, compression="near")
    assert _strip_count(near_file) == 2 and set(strip_methods(near_file)) == {StripMethod.NEAR_FLAT}
    assert np.array_equal(decode_kmq(near_file)[1].indices, photo)
    bars = np.repeat(np.repeat(rng.integers(0, 16, (16, 24)).astype(np.uint8), 32, axis=0), 32, axis=1)
    assert _strip_count(encode_kmq(bars, codebook, compression="near")) == 1
