"""Rate-optimized indices: psnr_loss= for a k= save, and psnr= as the smallest file."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from conftest import SAMPLES, kmq_bytes
from PIL import Image, ImageDraw
from test_near import strip_methods

import pil_kmq
from pil_kmq import api, codec
from pil_kmq import jobs, near, rate
from pil_kmq import quantize as quantize_module
from pil_kmq.format import StripMethod
from pil_kmq.quantize import Quantized, psnr_for_mse, quantize


def psnr(original: np.ndarray, result: np.ndarray) -> float:
    return psnr_for_mse(float(((original.astype(np.float64) - result) ** 2).mean()))


def reference_scan(pixels: np.ndarray, nearest: np.ndarray, codebook: np.ndarray, threshold: float, lookahead: int) -> np.ndarray:
    """The rule run by run, in pixel order, each SEGMENT pixels on their own: a run takes, of
    the distinct nearest entries of its first pixel and the next lookahead - 1, the one the
    most pixels from its first on take with at most threshold added squared error each (ties:
    least added error, then the earlier one); alpha entries only for pixels of their alpha."""
    channels = pixels.shape[-1]
    flat, own = pixels.reshape(-1, channels).astype(np.int64), nearest.reshape(-1)
    colors = codebook.astype(np.int64)
    alpha = colors[:, -1] if channels in (2, 4) else None
    chosen = own.copy()
    for start in range(0, len(own), rate.SEGMENT):
        end = min(start + rate.SEGMENT, len(own))
        first = start
        while first < end:
            candidates = list(dict.fromkeys(own[first : min(first + lookahead, end)].tolist()))
            options = []
            for order, entry in enumerate(candidates):
                j, extra = first, 0
                while j < end and (alpha is None or alpha[entry] == alpha[own[j]]):
                    more = ((flat[j] - colors[entry]) ** 2).sum() - ((flat[j] - colors[own[j]]) ** 2).sum()
                    if more > threshold:
                        break
                    extra, j = extra + more, j + 1
                options.append((-(j - first), extra, order, entry))
            run, _, _, entry = min(options)
            chosen[first : first - run] = entry
            first -= run
    return chosen.reshape(nearest.shape)


def pixel_by_pixel(pixels: np.ndarray, nearest: np.ndarray, codebook: np.ndarray, threshold: float) -> np.ndarray:
    """A pixel takes the index chosen for the pixel before it when that adds at most threshold
    squared error, except at a segment's start: what a run's own first entry gives."""
    flat, own = pixels.reshape(-1, pixels.shape[-1]).astype(np.int64), nearest.reshape(-1)
    colors = codebook.astype(np.int64)
    chosen = own.copy()
    for j in range(1, len(own)):
        if j % rate.SEGMENT == 0:
            continue
        extra = ((flat[j] - colors[chosen[j - 1]]) ** 2).sum() - ((flat[j] - colors[own[j]]) ** 2).sum()
        if extra <= threshold:
            chosen[j] = chosen[j - 1]
    return chosen.reshape(nearest.shape)


@pytest.mark.parametrize("shape", [(40, 37), (1, 700), (700, 1), (3, 300)])
def test_scan_follows_the_rule_run_by_run(shape: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    pixels = (rng.normal(128, 30, (*shape, 3)).clip(0, 255)).astype(np.uint8)
    indices, codebook = quantize(pixels, 12, 0)
    trader = rate.Trader(pixels, Quantized(indices, codebook))
    colors = codebook.astype(np.int64)
    for lookahead in (1, 3, rate.LOOKAHEAD):
        monkeypatch.setattr(rate, "LOOKAHEAD", lookahead)
        for threshold in (0.0, 50.0, 400.0):
            traded, added = trader._apply(threshold)
            assert np.array_equal(traded, reference_scan(pixels, indices, codebook, threshold, lookahead))
            if lookahead == 1:
                assert np.array_equal(traded, pixel_by_pixel(pixels, indices, codebook, threshold))
            assert added == ((pixels - colors[traded]) ** 2).sum() - ((pixels - colors[indices]) ** 2).sum()


def test_scan_with_alpha_follows_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    pixels = (rng.normal(128, 40, (30, 50, 4)).clip(0, 255)).astype(np.uint8)
    pixels[..., 3] = np.where(rng.random((30, 50)) < 0.3, 0, 255)
    pixels[pixels[..., 3] == 0] = 0  # transparent pixels: one colour, as the writer sees them
    indices, codebook = quantize(pixels, 12, 0)
    assert set(codebook[:, 3]) == {0, 255}
    trader = rate.Trader(pixels, Quantized(indices, codebook))
    for threshold in (50.0, float(rate.MAX_THRESHOLD)):
        traded, _ = trader._apply(threshold)
        assert np.array_equal(traded, reference_scan(pixels, indices, codebook, threshold, rate.LOOKAHEAD))
        assert np.array_equal(codebook[traded][..., 3], pixels[..., 3])


def test_a_run_starts_on_the_entry_the_pixels_after_it_need() -> None:
    # pixel 0 is nearest A but may take B (adding 120 <= 150); the nine after it are B itself
    codebook = np.array([[0, 0, 0], [20, 20, 20]], dtype=np.uint8)
    pixels = np.array([[[9, 9, 9]] + [[20, 20, 20]] * 9], dtype=np.uint8)
    nearest = np.array([[0] + [1] * 9], dtype=np.uint8)
    trader = rate.Trader(pixels, Quantized(nearest, codebook))
    traded, added = trader._apply(150.0)
    assert traded.tolist() == [[1] * 10] and added == 3 * 11**2 - 3 * 9**2
    # B is the nearest entry of the first pixel's LOOKAHEAD-th successor only: out of reach
    late = np.array([[[9, 9, 9]] * rate.LOOKAHEAD + [[20, 20, 20]] * 3], dtype=np.uint8)
    nearest_late = np.array([[0] * rate.LOOKAHEAD + [1] * 3], dtype=np.uint8)
    traded, _ = rate.Trader(late, Quantized(nearest_late, codebook))._apply(150.0)
    assert traded.tolist() == [[0] * rate.LOOKAHEAD + [1] * 3]


@pytest.mark.parametrize("loss", [0.25, 0.5, 1.0])
def test_psnr_loss_makes_smaller_files_within_the_loss(parrot: Image.Image, loss: float) -> None:
    pixels = np.asarray(parrot)
    plain = pil_kmq.compress_image(pixels, k=32)
    traded = pil_kmq.compress_image(pixels, k=32, psnr_loss=loss)
    assert traded.codebook.shape == plain.codebook.shape
    before, after = psnr(pixels, plain.codebook[plain.indices]), psnr(pixels, traded.codebook[traded.indices])
    assert before - loss <= after < before
    # the codebook followed the traded indices: each entry the rounded mean of its pixels
    assert after > psnr(pixels, plain.codebook[traded.indices])
    flat, chosen = pixels.reshape(-1, 3).astype(np.float64), traded.indices.reshape(-1)
    for entry in np.unique(chosen):
        assert np.array_equal(traded.codebook[entry], np.rint(flat[chosen == entry].mean(axis=0)))
    assert len(pil_kmq.encode_kmq(*traded)) < len(pil_kmq.encode_kmq(*plain)) * (1 - loss / 10)


def test_psnr_loss_through_pillow_and_zero_is_the_plain_save(ihc: Image.Image) -> None:
    assert kmq_bytes(ihc, k=16, psnr_loss=0) == kmq_bytes(ihc, k=16)
    traded = kmq_bytes(ihc, k=16, psnr_loss=0.5)
    assert len(traded) < len(kmq_bytes(ihc, k=16))
    with Image.open(io.BytesIO(traded)) as image:
        assert image.kmq_header.k == 16


def test_an_exact_image_stays_exact(palette_image: Image.Image) -> None:
    rgb = palette_image.convert("RGB")
    with Image.open(io.BytesIO(kmq_bytes(rgb, k=16, psnr_loss=3))) as image:
        assert image.tobytes() == rgb.tobytes()


def test_alpha_classes_stay_exact_under_any_loss() -> None:
    with Image.open(SAMPLES / "ihc-cutout.png") as cutout:
        original = np.asarray(cutout)
        data = kmq_bytes(cutout, k=8, psnr_loss=6)
    with Image.open(io.BytesIO(data)) as result:
        alpha = np.asarray(result)[..., 3]
    assert (alpha[original[..., 3] == 0] == 0).all() and (alpha[original[..., 3] == 255] == 255).all()


@pytest.mark.parametrize("target", [28.0, 34.0, 40.0])
def test_psnr_gives_a_file_no_larger_than_the_smallest_k(ihc: Image.Image, target: float) -> None:
    """The file psnr= writes against the smallest k's nearest indices as a save writes them."""
    pixels = np.asarray(ihc)
    smallest_k = pil_kmq.compress_image(pixels, psnr=target, compression="none")
    data = kmq_bytes(ihc, psnr=target)
    _, (indices, codebook) = pil_kmq.decode_kmq(data)
    assert psnr(pixels, codebook[indices]) >= target
    assert len(data) <= len(pil_kmq.encode_kmq(*smallest_k))


def test_psnr_with_dither_keeps_the_smallest_k(ihc: Image.Image) -> None:
    pixels = np.asarray(ihc)
    dithered = pil_kmq.compress_image(pixels, psnr=32, dither=True)
    assert len(dithered.codebook) == len(pil_kmq.compress_image(pixels, psnr=32, compression="none").codebook)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 16, "psnr_loss": -1}, "psnr_loss must be a number of dB from 0 up"),
        ({"k": 16, "psnr_loss": float("nan")}, "psnr_loss must be a number of dB from 0 up"),
        ({"k": 16, "psnr_loss": float("inf")}, "psnr_loss must be a number of dB from 0 up"),
        ({"k": 16, "psnr_loss": "0.5"}, "psnr_loss must be a number of dB from 0 up"),
        ({"k": 16, "psnr_loss": True}, "psnr_loss must be a number of dB from 0 up"),
        ({"psnr": 30, "psnr_loss": 0.5}, "psnr_loss applies to k= without dither"),
        ({"k": 16, "dither": True, "psnr_loss": 0.5}, "psnr_loss applies to k= without dither"),
    ],
)
def test_bad_psnr_loss_raises_valueerror_before_writing(parrot: Image.Image, options: dict[str, object], message: str) -> None:
    out = io.BytesIO()
    with pytest.raises(ValueError, match=message):
        parrot.save(out, "KMQ", **options)
    assert out.getvalue() == b""


def test_trading_is_deterministic(parrot: Image.Image) -> None:
    assert kmq_bytes(parrot, k=24, psnr_loss=0.7) == kmq_bytes(parrot, k=24, psnr_loss=0.7)


@pytest.mark.parametrize(("mode", "k"), [("L", 12), ("LA", 12), ("RGB", 1000)])
def test_psnr_loss_for_grey_and_two_byte_indices(parrot: Image.Image, mode: str, k: int) -> None:
    image = parrot.convert(mode)
    pixels = np.asarray(image)
    plain = pil_kmq.compress_image(pixels, k=k)
    traded = pil_kmq.compress_image(pixels, k=k, psnr_loss=0.5)
    assert traded.indices.dtype == plain.indices.dtype
    before = psnr(pixels, np.asarray(pil_kmq.reconstruct_image(*plain), dtype=np.float64))
    after = psnr(pixels, np.asarray(pil_kmq.reconstruct_image(*traded), dtype=np.float64))
    assert before - 0.5 <= after < before


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_recentring_moves_entries_to_their_pixels_mean_and_counts_the_error_it_takes_off(parrot: Image.Image, mode: str) -> None:
    pixels = np.asarray(parrot.convert(mode)).reshape(100, 100, -1)
    indices, codebook = quantize(pixels, 24, 0)
    rng = np.random.default_rng(5)
    traded = np.where(rng.random(indices.shape) < 0.2, np.roll(indices, 1, axis=1), indices).astype(indices.dtype)
    traded[traded == 3] = 4  # entry 3 stands for no pixel: it stays as it was
    moved, gain = rate.recentred(pixels, Quantized(traded, codebook))
    assert np.array_equal(moved.indices, traded) and np.array_equal(moved.codebook[3], codebook[3])

    def error(book: np.ndarray) -> int:
        return int(((pixels.astype(np.int64) - book[traded].astype(np.int64)) ** 2).sum())

    assert gain > 0 and error(codebook) - error(moved.codebook) == pytest.approx(gain, abs=1e-6)
    for entry in np.unique(traded):
        assert np.array_equal(moved.codebook[entry], np.rint(pixels[traded == entry].mean(axis=0)))


def test_recentring_leaves_alpha_codebooks_as_they_are(parrot: Image.Image) -> None:
    pixels = np.asarray(parrot.convert("RGBA"))
    quantized = Quantized(*quantize(pixels, 8, 0))
    moved, gain = rate.recentred(pixels, quantized)
    assert moved is quantized and gain == 0


# --- near_rans: each pixel takes the cheapest of its nearest entry, the colour order's first
# entries and its neighbours' ------------------------------------------------------------


def reference_choice(pixels: np.ndarray, nearest: np.ndarray, codebook: np.ndarray, costs: np.ndarray, weight: float) -> np.ndarray:
    """near.choose's rule pixel by pixel, with the symbols of spec 7.2 ("Near") written out:
    cost = added squared error + weight x the symbol's bits (its token's cost, plus extra bits)."""
    height, width = nearest.shape
    k, channels = codebook.shape
    colour = [list(map(int, entry)) + [0] * (4 - channels) for entry in codebook]
    alpha = codebook[:, -1] if channels in (2, 4) else None

    def d(e: int, f: int) -> int:
        return sum((colour[e][j] - colour[f][j]) ** 2 for j in range(4))

    def bits(context: int, s: int) -> float:
        if s < 16:
            return float(costs[context, s])
        m = s.bit_length() - 1
        return float(costs[context, 16 + 2 * (m - 4) + (s >> (m - 1) & 1)]) + m - 1

    def error(y: int, x: int, e: int) -> int:
        return int(((pixels[y, x].astype(np.int64) - codebook[e]) ** 2).sum())

    v = np.zeros_like(nearest)
    for y in range(height):
        for col in range(width):
            A = int(v[y - 1, col]) if y > 0 else None
            L = int(v[y, col - 1]) if col > 0 else (A if y > 0 else 0)
            if y == 0:
                A = L
            B = int(v[y - 1, col - 1]) if y > 0 and col > 0 else A
            C = int(v[y - 1, col + 1]) if y > 0 and col + 1 < width else A
            distance = d(B, C)
            context = 3 * ((L == A) + 2 * (A == C) + 4 * (B == A) + 8 * (B == L)) + (0 if distance <= 16 else 1 if distance <= 256 else 2)
            N = list(dict.fromkeys((L, A, C, B)))
            own = int(nearest[y, col])
            if own in N:
                symbol = N.index(own)
            else:
                G = [min(max(colour[L][j] + colour[A][j] - colour[B][j], min(colour[L][j], colour[A][j])), max(colour[L][j], colour[A][j])) for j in range(4)]
                P = min((L, A, B, C), key=lambda e: sum((G[j] - colour[e][j]) ** 2 for j in range(4)))
                O = sorted(range(k), key=lambda e: (d(P, e), e))
                symbol = len(N) + [e for e in O if e not in N].index(own)
            best, best_cost = own, weight * bits(context, symbol)
            if own not in N:  # the colour order's first entries, symbols len(N), len(N) + 1, ...
                for j, entry in enumerate([e for e in O if e not in N][: min(near.ORDER_CHOICES, symbol - len(N))]):
                    if alpha is not None and alpha[entry] != alpha[own]:
                        continue
                    cost = error(y, col, entry) - error(y, col, own) + weight * bits(context, len(N) + j)
                    if cost < best_cost:
                        best, best_cost = entry, cost
            for j, entry in enumerate(N):
                if entry == own or (alpha is not None and alpha[entry] != alpha[own]):
                    continue
                cost = error(y, col, entry) - error(y, col, own) + weight * bits(context, j)
                if cost < best_cost:
                    best, best_cost = entry, cost
            v[y, col] = best
    return v


@pytest.mark.parametrize(("shape", "k", "mode"), [((13, 17), 12, "RGB"), ((1, 40), 5, "RGB"), ((30, 1), 7, "L"), ((9, 21), 40, "RGBA"), ((8, 15), 100, "RGB"), ((20, 30), 300, "RGB")])
def test_near_choice_follows_the_rule_pixel_by_pixel(parrot: Image.Image, shape: tuple[int, int], k: int, mode: str) -> None:
    pixels = np.asarray(parrot.convert(mode).resize(shape[::-1]))
    pixels = pixels.reshape(*shape, -1).copy()
    if mode == "RGBA":
        pixels[::3, ::2, 3] = 0  # fully transparent pixels: their own alpha class
        pixels[pixels[..., 3] == 0, :3] = 0
    indices, codebook = quantize(pixels, k, 0)
    assert len(codebook) == k and indices.dtype == near.index_dtype(k)  # k = 300: uint16 rows
    palette = near.Palette(codebook)
    costs = near.token_costs([indices], palette)
    for weight in (0.0, 3.0, 40.0, 5000.0):
        chosen = np.empty_like(indices)
        added = near.choose(pixels.astype(np.int32), codebook, indices, palette, near.prices(costs, weight, k), chosen)
        assert np.array_equal(chosen, reference_choice(pixels, indices, codebook, costs, weight))
        errors = ((pixels.astype(np.int64) - codebook[chosen]) ** 2).sum() - ((pixels.astype(np.int64) - codebook[indices]) ** 2).sum()
        assert added == errors


def test_a_near_pass_tallies_what_recentring_needs(parrot: Image.Image) -> None:
    """A full pass of choices counts each entry's pixels and channel sums as it goes: the
    codebook it recentres to, and the error that takes off, are recentred's."""
    pixels = np.asarray(parrot)
    quantized = pil_kmq.compress_image(pixels, k=20)
    palette = near.Palette(quantized.codebook)
    price = near.prices(near.token_costs([quantized.indices], palette), 300.0, 20)
    chosen = np.empty_like(quantized.indices)
    tally = (np.zeros(20, dtype=np.int64), np.zeros((20, 4), dtype=np.int64))
    near.choose(pixels.astype(np.int32), quantized.codebook, quantized.indices, palette, price, chosen, 0, tally)
    assert np.array_equal(tally[0], np.bincount(chosen.ravel(), minlength=20))
    for channel in range(3):
        assert np.array_equal(tally[1][:, channel], np.bincount(chosen.ravel(), pixels[..., channel].ravel(), minlength=20).astype(np.int64))
    assert not tally[1][:, 3].any()
    expected, gain = rate.recentred(pixels, Quantized(chosen, quantized.codebook))
    moved, moved_gain = rate._moved(Quantized(chosen, quantized.codebook), tally[0], tally[1][:, :3])
    assert np.array_equal(moved.codebook, expected.codebook) and moved_gain == gain > 0


@pytest.mark.parametrize("loss", [0.25, 1.0])
def test_near_trade_beats_the_runs_trade_for_near_strips(ihc: Image.Image, loss: float) -> None:
    """With compression="near", psnr_loss trades for near_rans's bits, not for runs: a smaller
    file, within the same loss."""
    pixels = np.asarray(ihc)
    plain = pil_kmq.compress_image(pixels, k=48)
    traded = pil_kmq.compress_image(pixels, k=48, psnr_loss=loss, compression="near")
    runs = rate.Trader(pixels, plain)
    runs_traded = runs.within(rate.loss_budget(runs.error, runs.pixels_channels, loss))
    before = psnr(pixels, plain.codebook[plain.indices])
    assert before - loss <= psnr(pixels, traded.codebook[traded.indices]) < before
    near_bytes = len(pil_kmq.encode_kmq(*traded, compression="near"))
    assert near_bytes < 0.97 * len(pil_kmq.encode_kmq(*runs_traded, compression="near"))


def test_psnr_with_near_trades_for_near_strips(ihc: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = np.asarray(ihc)
    best = pil_kmq.compress_image(pixels, psnr=33, compression="near")
    assert psnr(pixels, best.codebook[best.indices]) >= 33
    monkeypatch.setattr(rate, "trader_for", lambda image, quantized, method: rate.Trader(image, quantized))
    runs = pil_kmq.compress_image(pixels, psnr=33, compression="near")
    assert len(pil_kmq.encode_kmq(*best, compression="near")) < 0.97 * len(pil_kmq.encode_kmq(*runs, compression="near"))


def test_near_trade_keeps_alpha_classes_and_is_deterministic() -> None:
    with Image.open(SAMPLES / "ihc-cutout.png") as cutout:
        original = np.asarray(cutout)
        data = kmq_bytes(cutout, k=8, psnr_loss=6, compression="near")
        assert data == kmq_bytes(cutout, k=8, psnr_loss=6, compression="near")
    with Image.open(io.BytesIO(data)) as result:
        alpha = np.asarray(result)[..., 3]
    assert (alpha[original[..., 3] == 0] == 0).all() and (alpha[original[..., 3] == 255] == 255).all()


@pytest.mark.parametrize("target", [26.0, 30.0, 36.0])
def test_psnr_with_near_reaches_the_target(parrot: Image.Image, target: float) -> None:
    """The sampled weight can overshoot the budget: the whole image's check must catch it."""
    pixels = np.asarray(parrot)
    best = pil_kmq.compress_image(pixels, psnr=target, compression="near")
    assert psnr(pixels, best.codebook[best.indices]) >= target


def test_psnr_with_near_reaches_the_target_with_alpha() -> None:
    """Transparent pixels' colour channels do not count (they are not seen), as psnr= measures."""
    with Image.open(SAMPLES / "ihc-cutout.png") as cutout:
        pixels = np.asarray(cutout)
    best = pil_kmq.compress_image(pixels, psnr=30, compression="near")
    seen = np.where(pixels[..., 3:] == 0, 0, pixels).astype(np.float64)
    shown = best.codebook[best.indices]
    assert psnr(seen, np.where(shown[..., 3:] == 0, 0, shown)) >= 30


def test_near_trade_above_1024_entries_is_the_runs_trade(ihc: Image.Image) -> None:
    pixels = np.asarray(ihc)
    traded = pil_kmq.compress_image(pixels, k=1100, psnr_loss=0.5, compression="near")
    plain = pil_kmq.compress_image(pixels, k=1100)
    assert len(plain.codebook) > near.COLOUR_ORDER_K
    runs = rate.Trader(pixels, plain)
    assert np.array_equal(traded.indices, runs.within(rate.loss_budget(runs.error, runs.pixels_channels, 0.5)).indices)


def test_near_trade_up_to_1024_entries_is_near_rans_own(parrot: Image.Image) -> None:
    pixels = np.asarray(parrot)
    plain = pil_kmq.compress_image(pixels, k=300)
    assert len(plain.codebook) == 300 and plain.indices.dtype == np.uint16
    trader = rate.trader_for(pixels, plain, StripMethod.NEAR_FLAT)
    assert isinstance(trader, rate.NearTrader)
    traded = pil_kmq.compress_image(pixels, k=300, psnr_loss=0.5, compression="near")
    expected = trader.within(rate.loss_budget(trader.error, trader.pixels_channels, 0.5))
    assert np.array_equal(traded.indices, expected.indices) and np.array_equal(traded.codebook, expected.codebook)
    runs = rate.Trader(pixels, plain)
    assert not np.array_equal(traded.indices, runs.within(rate.loss_budget(runs.error, runs.pixels_channels, 0.5)).indices)
    assert psnr(pixels, traded.codebook[traded.indices]) >= psnr(pixels, plain.codebook[plain.indices]) - 0.5 - 1e-9


def test_near_trade_is_the_same_whatever_the_workers(ihc: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same image, options and seed: same bytes, on one core or many."""
    results = set()
    for workers in (1, 2, 3):
        monkeypatch.setattr(jobs, "WORKERS", workers)
        results.add(kmq_bytes(ihc, psnr=33, compression="near"))
    assert len(results) == 1


def test_near_trade_samples_an_eighth_of_a_short_wide_image() -> None:
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (40, 20_000, 3), dtype=np.uint8)
    trader = rate.NearTrader(pixels, Quantized(*quantize(pixels, 16, 0)))
    assert 0.1 <= trader.sample_share <= 0.15


def test_near_trader_gives_the_same_choice_when_used_again(parrot: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bands kept between passes and the sample's points kept within a search must not
    leak into another budget's search: a trader used before chooses as a fresh one that keeps
    nothing (bands of 20 rows: three batches of two workers' bands)."""
    monkeypatch.setattr(rate, "BAND_PIXELS", 1 << 11)
    monkeypatch.setattr(jobs, "WORKERS", 2)
    pixels = np.asarray(parrot)
    quantized = Quantized(*quantize(pixels, 24, 0))
    used = rate.NearTrader(pixels, quantized)
    budgets = [rate.loss_budget(used.error, used.pixels_channels, loss) for loss in (2.0, 0.3)]
    used.within(budgets[0])
    again = used.within(budgets[1])
    monkeypatch.setattr(rate, "CACHED_PIXELS", 0)
    assert np.array_equal(again.indices, rate.NearTrader(pixels, quantized).within(budgets[1]).indices)


def test_next_full_pass_interpolates_between_passes_under_and_over() -> None:
    log_goal, log_budget = 20.0, 20.1
    passes = [(4.0, 19.0), (6.0, 22.0)]  # too little at 2**4, too much at 2**6
    assert rate._next_log_weight(passes, log_goal, log_budget, slope=1.0) == pytest.approx(4.0 + 2.0 / 3.0)


def test_next_full_pass_steps_by_the_slope_seen() -> None:
    log_goal, log_budget = 20.0, 20.1
    # One pass, 1 octave of error short: stepped by the sample's slope (2: half an octave).
    assert rate._next_log_weight([(5.0, 19.0)], log_goal, log_budget, slope=2.0) == pytest.approx(5.5)
    # Two passes on one side: by their own slope, (19.5 - 19) / (5.5 - 5) = 1.
    assert rate._next_log_weight([(5.0, 19.0), (5.5, 19.5)], log_goal, log_budget, slope=2.0) == pytest.approx(6.0)
    # Far off, a flat slope takes no more than NEAR_MAX_STEP octaves at once.
    assert rate._next_log_weight([(5.0, 30.0)], log_goal, log_budget, slope=0.25) == pytest.approx(5.0 - rate.NEAR_MAX_STEP)


@pytest.mark.parametrize("compression", ["zstd", "near"])
def test_psnr_search_makes_the_same_file_without_clustering_ahead(ihc: Image.Image, compression: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first larger k is clustered on its own thread while the first is traded and coded:
    that only saves time."""
    early = kmq_bytes(ihc, psnr=31, compression=compression)
    monkeypatch.setattr(quantize_module.Clustering, "ahead", lambda self, k, seedings=None: None)
    assert kmq_bytes(ihc, psnr=31, compression=compression) == early


def test_near_search_points_are_the_final_costs_own(parrot: Image.Image) -> None:
    """The sampled points a search narrows on are measured with the costs it returns, never
    left over from the first costs (the nearest indices'), which trade less at a weight."""
    pixels = np.asarray(parrot)
    trader = rate.NearTrader(pixels, Quantized(*quantize(pixels, 24, 0)))
    target = rate.loss_budget(trader.error, trader.pixels_channels, 1.0) / rate.NEAR_SAMPLE_SCALE
    found = trader._search(target)
    assert found is not None and len(trader.points) >= 2
    costs = found[0]
    fresh = rate.NearTrader(pixels, trader.quantized)
    assert trader.points == {log: fresh._sampled_error(costs, log) for log in trader.points}


@pytest.mark.parametrize("start", [(30.0, 1.7), (-30.0, 1.7), (5.0, 0.25)])
def test_near_search_from_any_start_stays_in_range_and_within_budget(parrot: Image.Image, start: tuple[float, float]) -> None:
    """A psnr= search's start is a guess: from far outside the weight range, or with a poor
    slope, the search still ends inside the range and the result keeps to the budget; the
    trader hands on where its kept pass was, for the next k."""
    pixels = np.asarray(parrot)
    trader = rate.NearTrader(pixels, Quantized(*quantize(pixels, 24, 0)))
    budget = rate.loss_budget(trader.error, trader.pixels_channels, 1.0)
    result = trader.within(budget, rate.NEAR_SAMPLE_SCALE, start)
    added = ((pixels.astype(np.int64) - result.codebook[result.indices]) ** 2).sum() - trader.error
    assert 0 < added <= budget
    assert trader.start is not None and rate.NEAR_WEIGHT_LOG[0] <= trader.start[0] <= rate.NEAR_WEIGHT_LOG[1] + rate.NEAR_MAX_STEP
    assert all(rate.NEAR_WEIGHT_LOG[0] <= log <= rate.NEAR_WEIGHT_LOG[1] for log in trader.points)


def test_near_search_with_a_tiny_budget_adds_at_most_it(parrot: Image.Image) -> None:
    """From a start far above what a tiny budget allows, the search comes down to where only
    equally near entries trade, within the budget; with no budget the nearest indices are
    kept, no start is handed on and the scale given stays as it was."""
    pixels = np.asarray(parrot)
    quantized = Quantized(*quantize(pixels, 24, 0))
    trader = rate.NearTrader(pixels, quantized)
    result = trader.within(1.0, 2.5, (8.0, 1.7))
    assert ((pixels.astype(np.int64) - result.codebook[result.indices]) ** 2).sum() - trader.error <= 1.0
    assert trader.within(0.0, 3.0, (8.0, 1.7)) is quantized and trader.start is None and trader.scale == 3.0


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_psnr_with_near_for_text_on_a_transparent_ground(mode: str) -> None:
    """Few colours, most pixels transparent: the first full pass may add no error at all, which
    must leave the next k's guess of the sample's bias as it was."""
    image = Image.new(mode, (300, 120), (0,) * len(mode))
    draw = ImageDraw.Draw(image)
    for line in range(5):
        draw.text((5, 5 + 22 * line), f"Rate and distortion, line {line}", fill=(0,) * (len(mode) - 1) + (255,))
    data = kmq_bytes(image, psnr=40, compression="near")
    with Image.open(io.BytesIO(data)) as loaded:
        assert loaded.mode == mode
        shown = np.asarray(loaded, dtype=np.float64)
    original = np.asarray(image, dtype=np.float64)
    for alpha in (0, 255):
        assert (shown[..., -1][original[..., -1] == alpha] == alpha).all()
    assert psnr(np.where(original[..., -1:] > 0, original, 0), np.where(shown[..., -1:] > 0, shown, 0)) >= 40


@pytest.mark.parametrize("compression", ["zstd", "near"])
def test_a_failing_psnr_search_leaves_no_clustering_running(ihc: Image.Image, compression: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise MemoryError("no room for the strips")

    monkeypatch.setattr(pil_kmq.api, "encode_parts", broken)
    with pytest.raises(MemoryError, match="no room"):
        kmq_bytes(ihc, psnr=31, compression=compression)
    assert not [thread for thread in threading.enumerate() if thread.name == "kmq-ahead"]


def _label_map(width: int = 240, height: int = 200, regions: int = 30) -> Image.Image:
    """Flat regions of 30 colours: nearest indices at fewer entries look drawn."""
    rng = np.random.default_rng(5)
    centres = rng.uniform(0, (width, height), (regions, 2))
    colours = rng.integers(0, 256, (regions, 3), dtype=np.uint8)
    y, x = np.mgrid[0:height, 0:width]
    region = np.argmin((x[..., None] - centres[:, 0]) ** 2 + (y[..., None] - centres[:, 1]) ** 2, axis=-1)
    return Image.fromarray(colours[region])


@pytest.mark.parametrize("loss", [0.5, 2.0])
def test_psnr_loss_never_makes_a_drawing_s_file_larger(loss: float) -> None:
    image = _label_map()
    plain = kmq_bytes(image, k=16)
    traded = kmq_bytes(image, k=16, psnr_loss=loss)
    assert len(traded) <= len(plain)
    # the trade's indices cost more than the nearest ones here: the plain save's bytes are kept
    pixels = np.asarray(image)
    trader = rate.trader_for(pixels, quantize(pixels, 16, 0), None)
    bigger = pil_kmq.encode_kmq(*trader.within(rate.loss_budget(trader.error, trader.pixels_channels, loss)))
    assert len(bigger) > len(plain) and traded == plain


def test_psnr_weighs_a_drawing_s_nearest_indices_as_a_k_save_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A search for zstd's strips (as "auto" runs for a drawing estimated larger near coded)
    weighs the nearest indices as a k= save writes them, near coded here."""
    image = _label_map(640, 480)  # zstd's strips over 2,048 bytes: auto tries near_rans on a k= save
    searched: list[StripMethod] = []
    original = api._searched
    monkeypatch.setattr(api, "_searched", lambda *args: searched.append(args[4]) or original(*args))
    searched_near = kmq_bytes(image, psnr=30)  # this map is estimated smaller near coded
    assert searched == [StripMethod.NEAR_FLAT]
    monkeypatch.setattr(api, "psnr_methods", lambda first, zstd: (StripMethod.RUNS_ZSTD,))
    data = kmq_bytes(image, psnr=30)
    assert len(searched_near) < len(data)
    with Image.open(io.BytesIO(data)) as result:
        assert psnr(np.asarray(image), np.asarray(result.convert("RGB"))) >= 30
    assert set(strip_methods(data)) == {StripMethod.NEAR_FLAT}  # the nearest indices, as auto writes them
    found = pil_kmq.compress_image(np.asarray(image), psnr=30)
    as_k_save = codec.auto_coded(api.Plain(found.indices, found.codebook), exact=False)
    assert isinstance(found, codec.Coded) and found.index_stream == as_k_save.index_stream  # not coded again
    monkeypatch.setattr(api, "looks_drawn", lambda indices: False)  # traded indices in runs only, as before
    runs_only = kmq_bytes(image, psnr=30)
    assert set(strip_methods(runs_only)) == {StripMethod.RUNS_ZSTD} and len(data) < 0.8 * len(runs_only)


def test_psnr_loss_keeps_a_drawing_s_plain_save_on_a_tie() -> None:
    # bit-packed indices cost the same whatever they are: the nearest ones, of higher PSNR, stay
    image = _label_map()
    assert kmq_bytes(image, k=16, psnr_loss=1.0, compression="none") == kmq_bytes(image, k=16, compression="none")
