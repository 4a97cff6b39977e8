"""compression="auto", the default: zstd's strips, except that a drawing saved with k= (or an
image kept exactly in more than 256 colours) is coded near_rans where rows sampled from it
estimate that far smaller, and the coding confirms it."""

from __future__ import annotations

import io
import threading
import types
import zlib

import numpy as np
import pytest
from conftest import kmq_bytes
from PIL import Image, ImageDraw
from test_near import strip_methods

from pil_kmq import codec, coding, decode_kmq, encode_kmq, near
from pil_kmq.api import COMPRESSIONS, DEFAULT_COMPRESSION, Exact, Plain, compress_image, for_writing
from pil_kmq.format import StripMethod, bits_for_k


def _label_map(width: int = 600, height: int = 400, regions: int = 40, seed: int = 0) -> np.ndarray:
    """Indices of a Voronoi partition: regions whose borders run on from row to row."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, (width, height), (regions, 2))
    y, x = np.mgrid[0:height, 0:width]
    distance = (x[..., None] - centres[:, 0]) ** 2 + (y[..., None] - centres[:, 1]) ** 2
    return np.argmin(distance, axis=2).astype(np.uint8)


def _image(indices: np.ndarray, seed: int = 1) -> Image.Image:
    palette = np.random.default_rng(seed).integers(0, 256, (int(indices.max()) + 1, 3), dtype=np.uint8)
    return Image.fromarray(palette[indices])


def _text(lines: int = 80) -> Image.Image:
    """Two colours of text: zstd finds the letters again, the near model does not."""
    rng = np.random.default_rng(4)
    image = Image.new("RGB", (700, 14 * lines + 10), "white")
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"
    for line in range(lines):
        words = ("".join(chr(int(c)) for c in rng.integers(97, 123, rng.integers(2, 9))) for _ in range(14))
        draw.text((5, 5 + 14 * line), " ".join(words), fill="black")
    return image


def test_auto_is_the_default_and_a_compression_name() -> None:
    assert DEFAULT_COMPRESSION == "auto" and COMPRESSIONS["auto"] == StripMethod.RUNS_ZSTD


def test_a_label_map_kept_exactly_is_stored_near_rans_and_far_smaller() -> None:
    image = _image(_label_map())
    auto, zstd = kmq_bytes(image, k=64), kmq_bytes(image, k=64, compression="zstd")
    assert set(strip_methods(auto)) == {StripMethod.NEAR_FLAT} and StripMethod.NEAR_FLAT not in strip_methods(zstd)
    assert len(auto) <= codec.AUTO_NEAR_MARGIN * len(zstd)
    with Image.open(io.BytesIO(auto)) as back:
        assert back.tobytes() == image.tobytes()


def test_a_flat_image_auto_near_codes_is_one_strip_and_a_photo_keeps_a_photos(ihc: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """A label map (1.0 M pixels) and a two-colour segmentation of a photo decode mostly as flat
    stretches: near coded by "auto", each is one strip, smaller than in a photo's strips, which
    two workers would not decode faster. The photo at four colours keeps a photo's strips."""
    label_map = _image(_label_map(1200, 800))
    segmentation = ihc.resize((303 * 3, 227 * 3), Image.Resampling.BICUBIC)
    for image, k in ((label_map, 64), (segmentation, 2)):
        one = kmq_bytes(image, k=k)
        assert set(strip_methods(one)) <= {StripMethod.NEAR_FLAT, StripMethod.NEAR_RANS} and len(strip_methods(one)) == 1
        with monkeypatch.context() as patch:
            patch.setattr(coding, "NEAR_ONE_STRIP_BITS", 0.0)
            split = kmq_bytes(image, k=k)
        assert len(strip_methods(split)) >= 2 and len(one) < len(split)
        with Image.open(io.BytesIO(one)) as a, Image.open(io.BytesIO(split)) as b:
            assert a.tobytes() == b.tobytes()
    photo = kmq_bytes(segmentation, k=4)
    assert set(strip_methods(photo)) <= {StripMethod.NEAR_FLAT, StripMethod.NEAR_RANS} and len(strip_methods(photo)) >= 2


def test_a_label_map_given_fewer_entries_than_colours_is_still_a_drawing_stored_near_rans() -> None:
    """Lossy, but drawn: its regions merge and the borders still run on from row to row."""
    image = _image(_label_map())
    auto, zstd = kmq_bytes(image, k=16), kmq_bytes(image, k=16, compression="zstd")
    assert set(strip_methods(auto)) == {StripMethod.NEAR_FLAT} and len(auto) <= codec.AUTO_NEAR_MARGIN * len(zstd)
    with Image.open(io.BytesIO(auto)) as back, Image.open(io.BytesIO(zstd)) as same:
        assert back.tobytes() == same.tobytes()  # the same indices, only coded otherwise


def test_a_photo_at_few_colours_keeps_zstd_unestimated(ihc: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lossy and not drawn (many literals): PNG-8's fast loads are the bar, not near_rans's bytes."""

    def refuse(*args: object) -> int:
        raise AssertionError("estimated near_rans for a photo")

    zstd = kmq_bytes(ihc, k=16, compression="zstd")
    monkeypatch.setattr(codec, "estimated_size", refuse)
    assert kmq_bytes(ihc, k=16) == zstd


def test_a_photo_resaved_at_its_k_keeps_zstd_unestimated(ihc: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept exactly, but a photo at up to 256 colours: there PNG-8's fast loads are the bar."""

    def refuse(*args: object) -> int:
        raise AssertionError("estimated near_rans for a photo of up to 256 colours")

    with Image.open(io.BytesIO(kmq_bytes(ihc, k=64))) as first:
        zstd = kmq_bytes(first, compression="zstd")
        monkeypatch.setattr(codec, "estimated_size", refuse)
        assert kmq_bytes(first) == zstd  # re-saving keeps its k: every colour kept


def test_text_kept_exactly_keeps_zstd_where_the_estimate_says_near_rans_is_larger(monkeypatch: pytest.MonkeyPatch) -> None:
    image = _text()
    zstd = kmq_bytes(image, k=2, compression="zstd")
    indices = (np.asarray(image)[:, :, 0] == 0).astype(np.uint8)
    codebook = np.array([[255] * 3, [0] * 3], np.uint8)
    size = sum(len(part) for part in codec.coded(codec.Quantized(indices, codebook), StripMethod.RUNS_ZSTD).index_stream[1])
    assert size >= codec.AUTO_MIN_BYTES and near.estimated_size(indices, codebook, codec.AUTO_STEP) > codec.AUTO_NEAR_MARGIN * size
    coded = codec.coded

    def zstd_only(quantized: codec.Quantized, method: StripMethod | None, weigh: bool = True) -> codec.Coded:
        assert method != StripMethod.NEAR_FLAT, "coded near_rans though the estimate says it is larger"
        return coded(quantized, method, weigh)

    monkeypatch.setattr(codec, "coded", zstd_only)
    assert kmq_bytes(image, k=2) == zstd


def test_a_small_zstd_stream_is_kept_without_estimating(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> int:
        raise AssertionError("estimated a stream under AUTO_MIN_BYTES")

    image = _image(_label_map(120, 80, 6))
    zstd = kmq_bytes(image, k=8, compression="zstd")
    monkeypatch.setattr(codec, "estimated_size", refuse)
    assert kmq_bytes(image, k=8) == zstd


def test_compress_image_leaves_a_plain_save_uncoded_and_marks_what_auto_may_code_near_rans(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **options: object) -> None:
        raise AssertionError("compress_image coded strips")

    monkeypatch.setattr(codec, "coded", refuse)
    pixels = np.asarray(_image(_label_map()))
    assert isinstance(compress_image(pixels, k=64), Exact) and isinstance(compress_image(pixels, k=64, dither=True), Exact)
    assert not isinstance(compress_image(pixels, k=16), Exact) and isinstance(compress_image(pixels, k=16), Plain)
    monkeypatch.undo()
    # a drawing's trade is weighed against its plain save: both coded, the shorter handed on
    # coded, and the writer codes it no more
    result = compress_image(pixels, k=16, psnr_loss=1.0)
    assert isinstance(result, codec.Coded)
    method, ready = for_writing(result, "auto")
    monkeypatch.setattr(codec, "encode_strips", refuse)
    assert method == result.method and b"".join(codec.encode_parts(*ready, method, reuse=ready))


def test_encode_kmq_auto_codes_given_indices_as_an_image_kept_exactly() -> None:
    indices = _label_map()
    codebook = np.random.default_rng(2).integers(0, 256, (40, 3), dtype=np.uint8)
    assert set(strip_methods(encode_kmq(indices, codebook))) == {StripMethod.NEAR_FLAT}
    assert StripMethod.NEAR_FLAT not in strip_methods(encode_kmq(indices, codebook, "zstd"))


@pytest.mark.parametrize("seed", range(3))
def test_the_estimate_is_near_the_real_size_of_a_label_map(seed: int) -> None:
    indices = _label_map(seed=seed)
    codebook = np.random.default_rng(seed).integers(0, 256, (40, 3), dtype=np.uint8)
    real = len(near.encode_near(indices, near.Palette(codebook)))
    assert 0.8 * real <= near.estimated_size(indices, codebook, 1) <= 1.1 * real
    assert 0.6 * real <= near.estimated_size(indices, codebook, codec.AUTO_STEP) <= 1.4 * real


def test_sampled_rows_find_the_edges_of_blocks_a_row_step_high() -> None:
    """Blocks of 16 rows (pixel art scaled up): rows a fixed offset apart would see only their
    insides, where nothing changes; drawn by change, the edges stand for the rest."""
    rng = np.random.default_rng(3)
    indices = np.kron(rng.integers(0, 12, (32, 40)), np.ones((16, 16), dtype=np.int64)).astype(np.uint8)
    rows, weights = near.sampled_rows(indices, 16)
    edges = rows % 16 == 0
    assert np.all(np.diff(rows) > 0) and np.count_nonzero(edges) >= len(rows) // 4  # 1 row in 16, drawn 4 x more
    assert weights[~edges].min() > weights[edges].max()  # a still row stands for more rows than an edge
    codebook = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    real = len(near.encode_near(indices, near.Palette(codebook)))
    assert 0.6 * real <= near.estimated_size(indices, codebook, 16) <= 1.4 * real


# --- zstd's strips spared where near coding comes in under the quick trial's floor ---------------


def _counting_coded(monkeypatch: pytest.MonkeyPatch) -> list[StripMethod | None]:
    """The methods codec.coded is called with from here on, in order."""
    methods: list[StripMethod | None] = []
    coded = codec.coded

    def counting(quantized: codec.Quantized, method: StripMethod | None, weigh: bool = True) -> codec.Coded:
        methods.append(method)
        return coded(quantized, method, weigh)

    monkeypatch.setattr(codec, "coded", counting)
    return methods


def _without_floor(image: Image.Image, k: int, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The file the writer makes with zstd's strips always coded first."""
    with monkeypatch.context() as patch:
        patch.setattr(codec, "_zstd_floor", lambda quantized, exact, estimate, trials: None)
        return kmq_bytes(image, k=k)


@pytest.mark.parametrize(("k", "mode"), [(16, "RGB"), (64, "RGB"), (16, "L")])
def test_a_label_map_near_codes_under_the_floor_without_coding_zstds_strips(k: int, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """In colour, and as grey levels (a codebook whose MED residuals the floor bounds too)."""
    image = _image(_label_map(800, 600, 30, seed=3)).convert(mode)
    without = _without_floor(image, k, monkeypatch)
    methods = _counting_coded(monkeypatch)
    auto = kmq_bytes(image, k=k)
    assert methods == [StripMethod.NEAR_FLAT], "coded zstd's strips though near coding is under their floor"
    assert auto == without and set(strip_methods(auto)) == {StripMethod.NEAR_FLAT}


def test_near_coding_at_or_above_the_floor_is_weighed_against_zstds_strips_coded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the floor leaves the choice open, zstd's strips are coded and near coding is not
    coded again: the file is the one the writer makes without the floor."""
    image = _image(_label_map(900, 700, 120, seed=5))
    without = _without_floor(image, 64, monkeypatch)
    header, (indices, _) = decode_kmq(without)
    near_bytes = header.index_stream_length
    assert set(strip_methods(without)) == {StripMethod.NEAR_FLAT} and coding.runs_floor(indices, bits_for_k(header.k)) >= near_bytes >= codec.AUTO_MIN_BYTES
    monkeypatch.setattr(codec, "rows_floor", lambda indices, bits, ordered, trial: near_bytes)  # near coding not under it
    monkeypatch.setattr(codec, "estimated_size", lambda indices, codebook, step: 0)  # near coding is tried
    methods = _counting_coded(monkeypatch)
    assert kmq_bytes(image, k=64) == without
    assert methods == [StripMethod.NEAR_FLAT, StripMethod.RUNS_ZSTD]


def test_near_coding_over_the_floor_and_over_zstds_strips_keeps_zstds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text in two colours, near coding tried against the floor (the estimate made 0): near
    coding is larger than the floor and than zstd's rows, which are kept, as without the floor."""
    image = _text()
    without = _without_floor(image, 2, monkeypatch)
    monkeypatch.setattr(codec, "estimated_size", lambda indices, codebook, step: 0)
    methods = _counting_coded(monkeypatch)
    assert kmq_bytes(image, k=2) == without and set(strip_methods(without)) == {StripMethod.ROWS_ZSTD}
    assert methods == [StripMethod.NEAR_FLAT, StripMethod.RUNS_ZSTD]


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_the_floor_is_under_zstds_strips_as_the_writer_codes_them(mode: str) -> None:
    for seed, regions in ((0, 12), (1, 40), (2, 90)):
        image = _image(_label_map(700, 500, regions, seed)).convert(mode)
        header, (indices, codebook) = decode_kmq(kmq_bytes(image, k=64, compression="zstd"))
        quantized = Exact(indices, codebook)
        floor = codec._zstd_floor(quantized, True, lambda: 0, codec._DrawnTrials(quantized))
        assert floor is not None and floor < sum(len(part) for part in codec.coded(quantized, StripMethod.RUNS_ZSTD).index_stream[1])


def test_the_floor_is_under_what_zstds_real_levels_make_of_label_maps() -> None:
    """Runs, rows and (grey levels, an ordered codebook) MED residuals, as a drawn strip codes them."""
    for seed, regions in ((0, 12), (1, 40), (2, 90)):
        indices = _label_map(700, 500, regions, seed)
        bits = int(indices.max()).bit_length()
        flags = coding._run_flags(indices)
        runs = len(coding._coded_runs(*coding._runs_streams(indices, flags, bits), StripMethod.RUNS_ZSTD, bits))
        rows = len(coding._coded_rows(coding._packed_rows(indices, bits)))
        med = len(coding._coded_predicted(coding.residuals(indices).tobytes(), drawn=True))
        assert coding.runs_floor(indices, bits) < runs and coding.rows_floor(indices, bits, ordered=False) < rows
        assert coding.rows_floor(indices, bits, ordered=True) < min(rows, med)


def test_one_drawn_strip_is_a_drawing_of_one_strip(ihc: Image.Image) -> None:
    label_map = _label_map(700, 500)
    assert coding.one_drawn_strip(label_map)
    first = label_map[: coding.strip_height_for(700, 500)]
    assert coding.writer_strips(first, 700, 500, 6, StripMethod.RUNS_ZSTD) == (500, True)  # one strip, drawn
    assert not coding.one_drawn_strip(label_map[:100, :160])  # small: coded every way
    assert not coding.one_drawn_strip(np.zeros((2, coding.DRAWING_STRIP_PIXELS // 2 + 1), np.uint8))  # two strips
    assert not coding.one_drawn_strip(np.asarray(ihc.quantize(16, method=Image.Quantize.MEDIANCUT)))  # many literals


# --- near coding likely to be weighed, coded beside zstd's strips ----------------------------------


def _threads_coded(monkeypatch: pytest.MonkeyPatch) -> dict[StripMethod | None, str]:
    """The thread codec.coded runs on for each method from here on."""
    threads: dict[StripMethod | None, str] = {}
    coded = codec.coded

    def recording(quantized: codec.Quantized, method: StripMethod | None, weigh: bool = True) -> codec.Coded:
        threads[method] = threading.current_thread().name
        return coded(quantized, method, weigh)

    monkeypatch.setattr(codec, "coded", recording)
    return threads


@pytest.mark.skipif(codec.WORKERS < 2, reason="one worker: both in turn")
@pytest.mark.parametrize(("image", "k", "kept"), [(_image(_label_map(900, 700, 120, seed=5)), 64, StripMethod.NEAR_FLAT), (_text(), 2, StripMethod.ROWS_ZSTD)])
def test_near_coding_likely_to_be_weighed_is_coded_beside_zstds_strips_to_the_same_file(image: Image.Image, k: int, kept: StripMethod, monkeypatch: pytest.MonkeyPatch) -> None:
    """No floor, and an estimate that makes near coding likely to be weighed: near coding on this
    thread, zstd's strip on a worker, and the file the writer makes coding them in turn, near
    coding kept (a label map) or not (two-colour text)."""
    monkeypatch.setattr(codec, "_zstd_floor", lambda quantized, exact, estimate, trials: None)
    monkeypatch.setattr(codec, "estimated_size", lambda indices, codebook, step: 0)
    with monkeypatch.context() as patch:
        patch.setattr(codec, "_near_likely", lambda quantized, exact, estimate, trials: False)
        in_turn = kmq_bytes(image, k=k)
    threads = _threads_coded(monkeypatch)
    assert kmq_bytes(image, k=k) == in_turn and set(strip_methods(in_turn)) == {kept}
    assert threads[StripMethod.NEAR_FLAT] == threading.current_thread().name and threads[StripMethod.RUNS_ZSTD].startswith("kmq-pool")


def test_near_coding_is_likely_only_within_the_margin_of_the_trial_share_of_at_least_auto_min_bytes() -> None:
    """Against AUTO_TRIAL_SHARE x the least of the runs' and the rows' trials (here made up:
    rows far under runs), which must reach AUTO_MIN_BYTES, below which near coding is not
    weighed; a strip that is not one drawn strip is never guessed at."""
    indices = _label_map(900, 700, 120, seed=5)
    quantized = Exact(indices, np.random.default_rng(0).integers(0, 256, (120, 3), dtype=np.uint8))
    margin = codec.AUTO_NEAR_MARGIN

    def trials(runs: int, rows: int, drawn: bool = True) -> object:
        return types.SimpleNamespace(drawn=drawn, runs=runs, rows=rows)

    expected = int(codec.AUTO_TRIAL_SHARE * 10_000)
    assert codec._near_likely(quantized, True, lambda: int(margin * expected), trials(100_000, 10_000))
    assert not codec._near_likely(quantized, True, lambda: int(margin * expected) + 2, trials(100_000, 10_000))  # the rows' trial tells
    assert not codec._near_likely(quantized, True, lambda: 0, trials(100_000, 2_000))  # 0.73 x 2,000 is under AUTO_MIN_BYTES
    assert not codec._near_likely(quantized, True, lambda: 0, trials(100_000, 10_000, drawn=False))


@pytest.mark.skipif(codec.WORKERS < 2, reason="one worker: no guess is made")
def test_near_coding_is_not_guessed_at_where_no_worker_is_spare(monkeypatch: pytest.MonkeyPatch) -> None:
    """In turn, near coding would only come first: zstd's strips are coded first, as before."""
    monkeypatch.setattr(codec, "_zstd_floor", lambda quantized, exact, estimate, trials: None)
    monkeypatch.setattr(codec, "estimated_size", lambda indices, codebook, step: 0)
    monkeypatch.setattr(codec, "spare_worker", lambda: False)
    threads = _threads_coded(monkeypatch)
    methods = _counting_coded(monkeypatch)
    kmq_bytes(_image(_label_map(900, 700, 120, seed=5)), k=64)
    assert methods == [StripMethod.RUNS_ZSTD, StripMethod.NEAR_FLAT]
    assert set(threads.values()) == {threading.current_thread().name}


@pytest.mark.skipif(codec.WORKERS < 2, reason="one worker: both in turn")
def test_zstds_strip_coded_beside_near_coding_runs_no_trial_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool's job shares the caller's kept trials (the floor's and the guess's)."""
    monkeypatch.setattr(codec, "_zstd_floor", lambda quantized, exact, estimate, trials: None)
    monkeypatch.setattr(codec, "estimated_size", lambda indices, codebook, step: 0)
    threads = _threads_coded(monkeypatch)
    tried: list[tuple[int, int]] = []
    trial = coding._trial

    def counted(data: bytes) -> int:
        tried.append((len(data), zlib.crc32(data)))
        return trial(data)

    monkeypatch.setattr(coding, "_trial", counted)
    kmq_bytes(_image(_label_map(900, 700, 120, seed=5)), k=64)
    assert threads[StripMethod.RUNS_ZSTD].startswith("kmq-pool") and tried and len(tried) == len(set(tried))


def test_near_coding_coded_beside_zstds_strips_and_then_not_weighed_leaves_zstds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A guess that was wrong (zstd's strip under AUTO_MIN_BYTES: near coding is not weighed)
    costs time, never the file."""
    image = _image(_label_map(300, 200, 6, seed=2))
    zstd = kmq_bytes(image, k=8, compression="zstd")
    assert decode_kmq(zstd)[0].index_stream_length < codec.AUTO_MIN_BYTES
    monkeypatch.setattr(codec, "_zstd_floor", lambda quantized, exact, estimate, trials: None)
    monkeypatch.setattr(codec, "_near_likely", lambda quantized, exact, estimate, trials: True)
    threads = _threads_coded(monkeypatch)
    assert kmq_bytes(image, k=8) == zstd and StripMethod.NEAR_FLAT in threads
