"""psnr=<dB>: the smallest file that reaches the target; with compression="none" (where the
indices cost the same whatever they are) the smallest k, to within a few per cent."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import SAMPLES, kmq_bytes
from PIL import Image

import pil_kmq
from pil_kmq.format import MAX_K, StripMethod
from pil_kmq.quantize import mse_for_psnr, psnr_for_mse, quantize, quantize_to_psnr


def psnr(original: np.ndarray, result: np.ndarray) -> float:
    return psnr_for_mse(float(((original.astype(np.float64) - result) ** 2).mean()))


def test_psnr_and_mse_conversions_agree() -> None:
    assert mse_for_psnr(psnr_for_mse(12.5)) == pytest.approx(12.5)
    assert psnr_for_mse(0) == float("inf")


@pytest.mark.parametrize("target", [24.0, 30.0, 36.0, 40.0])
def test_chosen_k_reaches_target_and_10_percent_fewer_do_not(ihc: Image.Image, target: float) -> None:
    pixels = np.asarray(ihc)
    indices, codebook = pil_kmq.compress_image(pixels, psnr=target, compression="none")
    assert psnr(pixels, codebook[indices]) >= target
    fewer = int(len(codebook) * 0.9)
    if fewer >= 1 and fewer < len(codebook):
        smaller = quantize(pixels, fewer, 0)
        assert psnr(pixels, smaller.codebook[smaller.indices]) < target


def test_psnr_save_option_through_pillow(ihc: Image.Image) -> None:
    with Image.open(io.BytesIO(kmq_bytes(ihc, psnr=32))) as image:
        assert psnr(np.asarray(ihc), np.asarray(image)) >= 32
        assert 2 <= image.kmq_header.k <= 256


def test_psnr_works_for_grey_and_alpha_images() -> None:
    with Image.open(SAMPLES / "ihc-cutout.png") as cutout:
        cutout.load()
    for image in (cutout, cutout.convert("L"), cutout.convert("LA")):
        pixels = np.asarray(image)
        with Image.open(io.BytesIO(kmq_bytes(image, psnr=30))) as result:
            decoded = np.asarray(result).astype(np.float64)
        if image.mode in ("LA", "RGBA"):  # colour under full transparency is not seen, so not counted
            decoded[pixels[..., -1] == 0] = pixels[pixels[..., -1] == 0]
        assert psnr(pixels, decoded) >= 30


def test_very_high_psnr_gives_lossless_when_colours_allow(parrot: Image.Image) -> None:
    for target in (80.0, float("inf")):
        with Image.open(io.BytesIO(kmq_bytes(parrot, psnr=target))) as image:
            assert image.tobytes() == parrot.tobytes()


def test_unreachable_psnr_names_the_best_reachable() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)  # 90,000 colours
    with pytest.raises(ValueError, match=r"psnr=70.0 dB is out of reach: k=65,536 gives"):
        pil_kmq.compress_image(noise, psnr=70.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 16, "psnr": 30}, "give k or psnr, not both"),
        ({"psnr": 0}, "psnr must be a number of dB above 0"),
        ({"psnr": -3}, "psnr must be a number of dB above 0"),
        ({"psnr": float("nan")}, "psnr must be a number of dB above 0"),
        ({"psnr": "30"}, "psnr must be a number of dB above 0"),
        ({"psnr": True}, "psnr must be a number of dB above 0"),
    ],
)
def test_bad_psnr_options_raise_valueerror(parrot: Image.Image, options: dict[str, object], message: str) -> None:
    out = io.BytesIO()
    with pytest.raises(ValueError, match=message):
        parrot.save(out, "KMQ", **options)
    assert out.getvalue() == b""


def test_psnr_file_reuses_the_coded_stream_and_equals_a_fresh_encoding(ihc: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """With zstd's strips the search codes each candidate to measure it; the winner's bytes are
    written as they were coded (no stream is coded but the candidates'), and are the bytes a
    fresh encoding of its indices gives."""
    from pil_kmq import api, codec

    candidates: list[int] = []
    streams: list[int] = []
    original_coded, original_stream = api.coded, codec.index_stream
    monkeypatch.setattr(api, "coded", lambda *args, **options: candidates.append(1) or original_coded(*args, **options))
    monkeypatch.setattr(codec, "index_stream", lambda *args: streams.append(1) or original_stream(*args))
    data = kmq_bytes(ihc, psnr=33, compression="zstd")
    assert candidates and len(streams) == len(candidates)
    monkeypatch.undo()
    _, (indices, codebook) = pil_kmq.decode_kmq(data)
    assert pil_kmq.encode_kmq(indices, codebook, "zstd") == data


def test_near_psnr_file_is_weighed_once_and_equals_a_fresh_encoding(ihc: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """With compression="near" the search sizes each candidate with near_rans strips alone; the
    winner alone is then coded as a plain save codes it (its near_rans strips reused, not coded
    again), and its bytes are the bytes a fresh encoding of its indices gives."""
    from pil_kmq import codec, coding

    streams: list[bool] = []
    near_coded: list[int] = []
    original_stream, original_near = codec.index_stream, coding.encode_near
    monkeypatch.setattr(codec, "index_stream", lambda *args: streams.append(args[3] if len(args) > 3 else True) or original_stream(*args))
    monkeypatch.setattr(coding, "encode_near", lambda *args, **kwargs: near_coded.append(1) or original_near(*args, **kwargs))
    data = kmq_bytes(ihc, psnr=33, compression="near")
    assert len(streams) >= 2 and not any(streams[:-1]) and streams[-1]  # candidates unweighed, the winner weighed
    assert len(near_coded) == len(streams) - 1  # one strip (303 x 227): coded once per candidate, reused for the winner
    monkeypatch.undo()
    _, (indices, codebook) = pil_kmq.decode_kmq(data)
    assert pil_kmq.encode_kmq(indices, codebook, compression="near") == data


def test_psnr_seeds_the_larger_codebooks_it_tries_once(ihc: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first clustering that reaches the target keeps the best of five seedings (k <= 64);
    the larger ones the search tries for a smaller file are seeded once (api.GROWTH_SEEDINGS)."""
    from pil_kmq import api, quantize as quantize_module

    seeded: list[tuple[int, int]] = []  # (k, seedings run)
    original = quantize_module.run_jobs

    def counting(function, jobs):
        if function is quantize_module._start:
            seeded.append((jobs[0][1], len(jobs)))
        return original(function, jobs)

    monkeypatch.setattr(quantize_module, "run_jobs", counting)
    kmq_bytes(ihc, psnr=30)
    runs = [count for _, count in seeded]
    first_growth = runs.index(api.GROWTH_SEEDINGS)
    assert first_growth >= 1 and set(runs[:first_growth]) == {quantize_module._N_INIT}
    assert set(runs[first_growth:]) == {api.GROWTH_SEEDINGS}
    assert all(k <= quantize_module._N_INIT_MAX_K for k, _ in seeded)  # where five is the default


def test_psnr_is_deterministic(ihc: Image.Image) -> None:
    assert kmq_bytes(ihc, psnr=33) == kmq_bytes(ihc, psnr=33)


def test_huge_psnr_means_lossless_not_an_overflow(parrot: Image.Image) -> None:
    for target in (1e4, 1e9, 1e308):
        with Image.open(io.BytesIO(kmq_bytes(parrot, psnr=target))) as image:
            assert image.tobytes() == parrot.tobytes()


def test_a_far_target_on_a_flat_error_curve_is_no_overflow() -> None:
    """Noise's error falls slowly with k: the search's extrapolation must not overflow."""
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for target in (400.0, 2500.0):
        assert len(quantize_to_psnr(noise, target).codebook) == 32 * 32


def test_a_low_target_with_alpha_still_keeps_alpha_classes_exact() -> None:
    with Image.open(SAMPLES / "ihc-cutout.png") as cutout:
        original = np.asarray(cutout)
        with Image.open(io.BytesIO(kmq_bytes(cutout, psnr=6))) as result:
            alpha = np.asarray(result)[..., 3]
            assert result.kmq_header.k >= 2
    assert (alpha[original[..., 3] == 0] == 0).all() and (alpha[original[..., 3] == 255] == 255).all()


@pytest.mark.parametrize(("first_k", "tried"), [(100, [140]), (200, []), (300, []), (520, [728, 1019, 1427])])
def test_psnr_tries_no_larger_codebook_from_128_to_511_entries(first_k: int, tried: list[int]) -> None:
    """Larger k are tried for a smaller file, but not from k in rate.NO_GROWTH (on the Kodak set
    they almost never made one); a k grown into that range stops there too."""
    from pil_kmq import rate
    from pil_kmq.api import Quantized

    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    asked: list[int] = []

    def quantize_k(k: int) -> Quantized:
        asked.append(k)
        return quantize(image, k)

    def size(quantized: Quantized) -> tuple[int, Quantized]:
        return 10_000 - len(asked), quantized  # each larger k smaller: growth goes on

    rate.smallest_for_psnr(image, quantize(image, first_k), 10.0, quantize_k, size, 2_000)
    assert asked == tried


def _text(size: tuple[int, int], lines: int, spacing: int, words: str, shifts: int, margin: int) -> Image.Image:
    """Lines of text on white, line n starting n % shifts characters into `words`."""
    from PIL import ImageDraw

    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    for line in range(lines):
        draw.text((margin, margin + spacing * line), words[line % shifts :], fill=(20, 20, 60) if line % 3 else (160, 20, 20))
    return page


def _text_page() -> Image.Image:
    """Lines of text on white: rows and runs repeat far, which zstd's strips code best."""
    return _text((320, 240), 20, 12, "The quick brown fox jumps over the lazy dog 0123", 7, 4)


def test_auto_psnr_searches_a_photo_for_near_coded_strips(ihc: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """psnr= asks for the smallest file: on a photo "auto" runs near coding's search alone (the
    very file compression="near" writes), smaller than zstd's at the same target."""
    from pil_kmq import api
    from test_coding import strip_methods

    searched: list[StripMethod] = []
    original = api._searched
    monkeypatch.setattr(api, "_searched", lambda *args: searched.append(args[4]) or original(*args))
    auto = kmq_bytes(ihc, psnr=33)
    assert searched == [StripMethod.NEAR_FLAT]
    monkeypatch.undo()
    assert auto == kmq_bytes(ihc, psnr=33, compression="near")
    assert len(auto) < 0.9 * len(kmq_bytes(ihc, psnr=33, compression="zstd"))
    assert StripMethod.NEAR_FLAT in strip_methods(auto) or StripMethod.NEAR_RANS in strip_methods(auto)


def test_auto_psnr_keeps_zstd_strips_for_text() -> None:
    """Text, whose near_rans estimate is several times zstd's bytes, is searched for zstd's
    strips alone: the file compression="zstd" writes."""
    from pil_kmq import codec
    from pil_kmq.quantize import Clustering

    page = _text_page()
    first = Clustering(np.asarray(page), 0).at_psnr(32, MAX_K, narrow=False)
    assert codec.psnr_methods(first, codec.coded(first, StripMethod.RUNS_ZSTD)) == (StripMethod.RUNS_ZSTD,)
    assert kmq_bytes(page, psnr=32) == kmq_bytes(page, psnr=32, compression="zstd")


def _both_searches(monkeypatch: pytest.MonkeyPatch) -> None:
    from pil_kmq import codec

    monkeypatch.setattr(codec, "PSNR_NEAR_MARGIN", 0.0)
    monkeypatch.setattr(codec, "PSNR_BOTH_MARGIN", float("inf"))


@pytest.mark.parametrize("image", ["ihc", "page"])
def test_auto_psnr_between_the_margins_keeps_the_smaller_of_both_searches(image: str, ihc: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the estimate falls between the margins both searches run and the smaller file is
    written, whichever it is."""
    picture = ihc if image == "ihc" else _text_page()
    both = {method: kmq_bytes(picture, psnr=34, compression=method) for method in ("near", "zstd")}
    _both_searches(monkeypatch)
    assert kmq_bytes(picture, psnr=34) == min(both.values(), key=len)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_both_searches_run_side_by_side_and_make_the_same_file(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each search on a thread of its own, at the same time; each larger k clustered once
    for both, ahead or when asked; the file is the one the searches make one after the other
    (as they do once the image is over the size limit). An L image's rows come as (H, W)."""
    import threading

    from pil_kmq import api
    from pil_kmq.quantize import Clustering

    _both_searches(monkeypatch)
    monkeypatch.setattr(api, "WORKERS", 2)  # the same path on a one-core machine
    page = _sparse_text().convert(mode)
    threads: list[tuple[str, StripMethod]] = []
    clustered: list[tuple[int, int | None]] = []
    asked: list[tuple[int, int | None]] = []
    meeting: list[threading.Barrier] = [threading.Barrier(2, timeout=60)]  # both searches must be running at once
    searched, at_k, ahead = api._searched, Clustering.at_k, Clustering.ahead

    def spied(pixels: object, clustering: object, first: object, psnr: float, method: StripMethod, *rest: object) -> object:
        threads.append((threading.current_thread().name, method))
        if meeting:
            meeting[0].wait()
        return searched(pixels, clustering, first, psnr, method, *rest)  # type: ignore[arg-type]

    def counted(self: Clustering, k: int, seedings: int | None = None) -> object:
        clustered.append((k, seedings))
        return at_k(self, k, seedings)

    def asked_ahead(self: Clustering, k: int, seedings: int | None = None) -> None:
        asked.append((k, seedings))
        ahead(self, k, seedings)

    monkeypatch.setattr(api, "_searched", spied)
    monkeypatch.setattr(Clustering, "at_k", counted)
    monkeypatch.setattr(Clustering, "ahead", asked_ahead)
    side_by_side = kmq_bytes(page, psnr=30)
    assert len(threads) == 2 and len({name for name, _ in threads}) == 2 and {method for _, method in threads} == {StripMethod.NEAR_FLAT, StripMethod.RUNS_ZSTD}
    assert clustered and len(clustered) == len(set(clustered))  # the two searches share each k's clustering
    assert asked and len(asked) == len(set(asked))  # ... and start it ahead once
    meeting.clear()
    monkeypatch.setattr(api, "SIDE_BY_SIDE_PIXELS", page.width * page.height - 1)
    threads.clear()
    assert kmq_bytes(page, psnr=30) == side_by_side
    assert len({name for name, _ in threads}) == 1


def test_psnr_saves_on_both_pool_threads_start_no_thread_that_waits_on_the_pool(ihc: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a pool thread neither the second search nor the clustering of the next k goes to a
    thread of its own: their jobs would wait for a pool whose threads all wait for them. (The
    spies fail at once, so a regression is an error, not a hang.) The photo has colours enough
    for a clustering to split its work into jobs."""
    from pil_kmq import api, jobs, quantize

    _both_searches(monkeypatch)
    side_by_side, background = api._side_by_side, quantize._Background

    def refused(*args: object) -> object:
        if jobs.in_pool():
            raise AssertionError("a thread started on a pool thread")
        return side_by_side(*args)  # type: ignore[arg-type]

    class Refused(background):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object) -> None:
            if jobs.in_pool():
                raise AssertionError("a thread started on a pool thread")
            super().__init__(*args)

    monkeypatch.setattr(api, "_side_by_side", refused)
    monkeypatch.setattr(quantize, "_Background", Refused)
    expected = kmq_bytes(ihc, psnr=30)
    saves = [jobs._shared_pool().submit(kmq_bytes, ihc.copy(), psnr=30) for _ in range(2)]  # Pillow keeps save options on the image
    assert [save.result(timeout=300) for save in saves] == [expected] * 2


@pytest.mark.parametrize("failing", [StripMethod.NEAR_FLAT, StripMethod.RUNS_ZSTD])
def test_a_failing_search_raises_and_leaves_no_thread(failing: StripMethod, monkeypatch: pytest.MonkeyPatch) -> None:
    """Either search's error (the side thread's or the caller's) reaches the caller once both
    searches have ended and the clustering the failing one started ahead has been waited for
    (held back here, so one left running would still be alive)."""
    import threading

    from pil_kmq import api, quantize

    _both_searches(monkeypatch)
    monkeypatch.setattr(api, "WORKERS", 2)
    searched, histogram = api._searched, quantize.quantize_histogram
    release = threading.Event()

    def held_back(*args: object) -> object:
        if threading.current_thread().name == "kmq-ahead":
            release.wait(5)
        return histogram(*args)  # type: ignore[arg-type]

    other_done = threading.Event()

    def failing_search(pixels: object, clustering: object, first: object, psnr: float, method: StripMethod, *rest: object) -> object:
        if method == failing:  # after the other search, so that nothing but the owner waits for this clustering
            other_done.wait(60)
            clustering.ahead(len(first.codebook) + 7, 1)  # type: ignore[attr-defined]
            raise MemoryError("a search")
        try:
            return searched(pixels, clustering, first, psnr, method, *rest)  # type: ignore[arg-type]
        finally:
            other_done.set()

    monkeypatch.setattr(quantize, "quantize_histogram", held_back)
    monkeypatch.setattr(api, "_searched", failing_search)
    timer = threading.Timer(0.5, release.set)
    timer.start()
    try:
        with pytest.raises(MemoryError, match="a search"):
            kmq_bytes(_sparse_text(), psnr=30)
        assert not [thread for thread in threading.enumerate() if thread.name.startswith(("kmq-search", "kmq-ahead"))]
    finally:
        release.set()
        timer.cancel()


@pytest.mark.parametrize(
    ("margin", "extra", "expected"),
    [
        ("PSNR_NEAR_MARGIN", 0, (StripMethod.NEAR_FLAT,)),
        ("PSNR_NEAR_MARGIN", 1, (StripMethod.NEAR_FLAT, StripMethod.RUNS_ZSTD)),
        ("PSNR_BOTH_MARGIN", 0, (StripMethod.NEAR_FLAT, StripMethod.RUNS_ZSTD)),
        ("PSNR_BOTH_MARGIN", 1, (StripMethod.RUNS_ZSTD,)),
    ],
)
def test_psnr_methods_follow_the_estimate_against_zstd_s_bytes(ihc: Image.Image, monkeypatch: pytest.MonkeyPatch, margin: str, extra: int, expected: tuple[StripMethod, ...]) -> None:
    """Near coding's search up to 1.1 x zstd's bytes (inclusive), both up to 1.6 x, zstd's above."""
    from pil_kmq import codec
    from pil_kmq.quantize import Clustering

    assert (codec.PSNR_NEAR_MARGIN, codec.PSNR_BOTH_MARGIN) == (1.1, 1.6)
    first = Clustering(np.asarray(ihc), 0).at_psnr(33, MAX_K, narrow=False)
    zstd = codec.coded(first, StripMethod.RUNS_ZSTD)
    estimate = int(getattr(codec, margin) * codec._stream_length(zstd)) + extra
    monkeypatch.setattr(codec, "estimated_size", lambda *args: estimate)
    assert codec.psnr_methods(first, zstd) == expected


def test_auto_psnr_beyond_near_coding_s_entries_searches_zstd_s_strips() -> None:
    """Noise at 45 dB needs a first k above 4,096, which near coding cannot hold."""
    from pil_kmq import codec
    from pil_kmq.quantize import Clustering

    noise = Image.fromarray(np.random.default_rng(3).integers(0, 256, (100, 100, 3), dtype=np.uint8))
    first = Clustering(np.asarray(noise), 0).at_psnr(45, MAX_K, narrow=False)
    assert len(first.codebook) > 4096 and codec.psnr_methods(first, codec.coded(first, StripMethod.RUNS_ZSTD)) == (StripMethod.RUNS_ZSTD,)
    assert kmq_bytes(noise, psnr=45) == kmq_bytes(noise, psnr=45, compression="zstd")


def _sparse_text() -> Image.Image:
    """A few short lines of text far apart: few literals, so its indices look drawn."""
    return _text((480, 360), 12, 30, "The quick brown fox jumps over", 5, 8)


def test_auto_psnr_codes_the_first_k_s_zstd_strips_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The zstd strips psnr_methods sizes are the ones a search for runs weighs the first k's
    nearest indices with (where they look drawn): no indices are coded twice alike."""
    from pil_kmq import api, codec
    from pil_kmq.coding import looks_drawn
    from pil_kmq.quantize import Clustering

    seen: list[tuple[np.ndarray, StripMethod | None, bool]] = []  # the arrays kept: ids stay unique
    original = codec.coded

    def counted(quantized: object, method: StripMethod | None, weigh: bool = True) -> object:
        seen.append((quantized[0], method, weigh))  # type: ignore[index]
        return original(quantized, method, weigh)  # type: ignore[arg-type]

    monkeypatch.setattr(codec, "coded", counted)
    monkeypatch.setattr(api, "coded", counted)
    page = _sparse_text()
    first = Clustering(np.asarray(page), 0).at_psnr(32, MAX_K, narrow=False)
    assert looks_drawn(first.indices) and codec.psnr_methods(first, original(first, StripMethod.RUNS_ZSTD)) == (StripMethod.RUNS_ZSTD,)
    seen.clear()
    kmq_bytes(page, psnr=32)
    coded_alike = [(id(indices), method, weigh) for indices, method, weigh in seen]
    assert coded_alike and len(coded_alike) == len(set(coded_alike))
