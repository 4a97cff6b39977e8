"""What near coding costs a photo's load, and what a leaner index model would cost in bytes.

A photo's near coded file is 0.8 x its zstd file but loads in 2.3-2.8 x PNG-8's time, so the
default (`compression="auto"`) keeps zstd's strips for photos. This script measures why:

- **time**: the near_rans kernel alone (one strip, decoded whole on one thread, its tables
  made beforehand), nanoseconds a pixel, against PNG-8's whole load (open + convert to RGB) a
  pixel. A near coded load on two threads takes at least half the kernel's time, so the kernel
  must be at most about 2 x PNG-8's load a pixel (the "need" column: kernel ÷ that) before the
  rest of a load (entries looked up, Pillow's copy) is counted;
- **bytes**: what simpler index models would cost, as the entropy of their symbols in
  near_rans's own 48 contexts (plus 2 bytes a used token, near its stored model), ÷ near_rans's
  real bytes. "left's order": the index's rank among the entries ordered by colour from the left
  neighbour's, one table look-up a pixel. "left, above, left's order": 0 for the left
  neighbour's index, 1 for the one above (when it differs), else the rank in left's order past
  those two. near_rans ranks among four neighbours, then from an entry predicted from them;
- and, for scale, WebP lossless's own load (`method=6`, the anchor of the byte targets) ÷
  PNG-8's, the same pixels;
- the kernel's two halves apart, ns a pixel: the model alone (`near._symbols`: every pixel's
  symbol and context worked out with all indices known, as the encoder does, so no pixel waits
  for the one before and nothing is entropy coded; it also splits symbols into tokens and
  extra bits, which a decoder does not), and the coder alone (the same tokens decoded by the
  same static rANS coder, their contexts given). A decoder must make the model's decisions:
  "model ÷ (2 × PNG-8 load)" well above 1 leaves a coder for near_rans's model no room to load
  as fast as PNG-8 on two threads;
- and near_rans's own tokens in 96 contexts (its 16 patterns × 6 levels of the four
  neighbours' summed squared colour differences, <= 16, 64, 256, 1024, 4096, more) ÷ in its
  48, as entropy: what contexts split by that measure could still gain.

Photos only: the Kodak set (tuning) and the held-out photos (never tuned on), K = 16, 64, 256,
nearest-entry indices of Pillow's median cut (the model's costs, not k-means', are measured).

    python benchmarks/near_floor.py           # both sets
    python benchmarks/near_floor.py --quick   # every third image
"""

from __future__ import annotations

import argparse
import io
import time

import heldout
import numpy as np
from common import geomean, kodak_images
from numba import njit
from PIL import Image

from pil_kmq import near

KS = (16, 64, 256)


def indexed(image: Image.Image, k: int) -> tuple[np.ndarray, np.ndarray, Image.Image]:
    """Nearest-entry indices (uint8), their codebook, and the paletted image."""
    paletted = image.quantize(k, dither=Image.Dither.NONE)
    indices = np.asarray(paletted).astype(np.uint8)
    codebook = np.array(paletted.getpalette()[: 3 * k], dtype=np.uint8).reshape(-1, 3)
    return indices, codebook[: int(indices.max()) + 1], paletted


def kernel_ns(indices: np.ndarray, palette: near.Palette, repeat: int) -> float:
    """The near_rans kernel's best time a pixel, the whole image one strip on one thread."""
    payload = near.encode_near(indices, palette)
    palette.tables  # made once, before timing
    out = np.empty(indices.size, dtype=indices.dtype)
    best = float("inf")
    for _ in range(repeat):
        strip = near.NearStrip(payload, palette, indices.shape[1], len(palette.codebook), "strip")
        start = time.perf_counter()
        strip.decode(out)
        best = min(best, time.perf_counter() - start)
    assert np.array_equal(out, indices.reshape(-1))
    return 1e9 * best / indices.size


def _symbols(indices: np.ndarray, palette: near.Palette) -> tuple[np.ndarray, np.ndarray]:
    """near_rans's tokens and contexts of every pixel (uint8 each)."""
    tokens, contexts = np.empty(indices.size, np.uint8), np.empty(indices.size, np.uint8)
    near._symbols(indices, *palette.tables, tokens, np.empty(indices.size, np.uint16), contexts, False)
    return tokens, contexts


def model_ns(indices: np.ndarray, palette: near.Palette, repeat: int) -> float:
    """The model alone, best time a pixel: every symbol and context from known indices."""
    tokens, contexts, extras = np.empty(indices.size, np.uint8), np.empty(indices.size, np.uint8), np.empty(indices.size, np.uint16)
    tables = palette.tables
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        near._symbols(indices, *tables, tokens, extras, contexts, False)
        best = min(best, time.perf_counter() - start)
    return 1e9 * best / indices.size


@njit(nogil=True)
def _coder(words: np.ndarray, state: int, frequency: np.ndarray, start: np.ndarray, slots: np.ndarray, contexts: np.ndarray, out: np.ndarray) -> int:
    """near_rans's static rANS decoder (spec 7.2's steps) on tokens whose contexts are given."""
    cursor = 0
    for at in range(contexts.size):
        context = contexts[at]
        slot = state & (near.PROB_SCALE - 1)
        token = int(slots[context, slot])
        state = int(frequency[context, token]) * (state >> near.PROB_BITS) + slot - int(start[context, token])
        if state < near.STATE_LOW:
            state = (state << 16) | int(words[cursor])
            cursor += 1
        if token >= near.DIRECT_SYMBOLS:
            state >>= 3 + (token - near.DIRECT_SYMBOLS) // 2  # the extra bits, not kept
            if state < near.STATE_LOW:
                state = (state << 16) | int(words[cursor])
                cursor += 1
        out[at] = token
    return state


def coder_ns(indices: np.ndarray, palette: near.Palette, repeat: int) -> float:
    """The coder alone, best time a pixel: the near_rans payload's tokens, contexts given."""
    data = np.frombuffer(near.encode_near(indices, palette), np.uint8)
    frequency, start, slots, used = near.parse_model(data, "strip", len(palette.codebook))
    state = int.from_bytes(data[used : used + 4].tobytes(), "big")
    words = data[used + 4 :].view(">u2").astype(np.uint16)
    tokens, contexts = _symbols(indices, palette)
    out = np.empty_like(tokens)
    best = float("inf")
    for _ in range(repeat):
        begin = time.perf_counter()
        _coder(words, state, frequency, start, slots, contexts, out)
        best = min(best, time.perf_counter() - begin)
    assert np.array_equal(out, tokens)
    return 1e9 * best / indices.size


def png_load_ns(paletted: Image.Image, repeat: int) -> float:
    buffer = io.BytesIO()
    paletted.save(buffer, "PNG", optimize=True)
    data = buffer.getvalue()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        with Image.open(io.BytesIO(data)) as opened:
            opened.convert("RGB")
        best = min(best, time.perf_counter() - start)
    return 1e9 * best / paletted.width / paletted.height


def webp_load_ns(paletted: Image.Image, repeat: int) -> float:
    """WebP lossless's load a pixel (open + load) of the same pixels, at the effort heldout.py asks."""
    buffer = io.BytesIO()
    paletted.convert("RGB").save(buffer, "WEBP", lossless=True, quality=100, method=6)
    data = buffer.getvalue()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
        best = min(best, time.perf_counter() - start)
    return 1e9 * best / paletted.width / paletted.height


def _neighbours(indices: np.ndarray) -> tuple[np.ndarray, ...]:
    """left, above, above-left, above-right of every pixel, flat, with spec 7.2's edge rules."""
    v = indices.astype(np.int64)
    above = np.empty_like(v)
    above[1:] = v[:-1]
    left = np.empty_like(v)
    left[:, 1:] = v[:, :-1]
    left[1:, 0] = above[1:, 0]
    left[0, 0] = 0
    above[0] = left[0]
    above_left = np.empty_like(v)
    above_left[1:, 1:] = v[:-1, :-1]
    above_left[1:, 0] = above[1:, 0]
    above_left[0] = left[0]
    above_right = np.empty_like(v)
    above_right[1:, :-1] = v[:-1, 1:]
    above_right[1:, -1] = above[1:, -1]
    above_right[0] = left[0]
    return left.ravel(), above.ravel(), above_left.ravel(), above_right.ravel()


def _coded_bytes(contexts: np.ndarray, symbols: np.ndarray) -> float:
    """Bytes of symbols as near_rans's tokens in these contexts: their entropy, the extra bits,
    and 2 bytes a token used in a context."""
    octave = np.floor(np.log2(np.maximum(symbols, 1))).astype(np.int64)
    tokens = np.where(symbols < near.DIRECT_SYMBOLS, symbols, near.DIRECT_SYMBOLS + 2 * (octave - 4) + ((symbols >> np.maximum(octave - 1, 0)) & 1))
    extra = np.where(symbols < near.DIRECT_SYMBOLS, 0, octave - 1)
    return _token_bytes(contexts, tokens) + float(extra.sum()) / 8


def _token_bytes(contexts: np.ndarray, tokens: np.ndarray) -> float:
    """The entropy of tokens in these contexts, and 2 bytes a token used in a context."""
    count = int(contexts.max()) + 1
    counts = np.bincount(contexts * near.TOKENS + tokens, minlength=count * near.TOKENS).reshape(count, near.TOKENS)
    totals = np.broadcast_to(counts.sum(axis=1, keepdims=True), counts.shape)
    used = counts > 0
    return float(np.sum(counts[used] * np.log2(totals[used] / counts[used]))) / 8 + 2 * int(used.sum())


FINER_LEVELS = (16, 64, 256, 1024, 4096)


def finer_ratio(indices: np.ndarray, palette: near.Palette) -> float:
    """near_rans's tokens in 96 contexts (16 patterns x 6 levels of the neighbours' summed
    squared colour differences) ÷ in its own 48, as entropy (the extra bits, the same in both, left out)."""
    tokens, contexts = (array.astype(np.int64) for array in _symbols(indices, palette))
    left, above, above_left, above_right = _neighbours(indices)
    colours = palette.codebook.astype(np.int64)

    def apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ((colours[a] - colours[b]) ** 2).sum(axis=1)

    differences = apart(left, above) + apart(above_left, above_right) + apart(left, above_left) + apart(above, above_left)
    finer = contexts // 3 * (len(FINER_LEVELS) + 1) + np.searchsorted(np.array(FINER_LEVELS), differences)
    return _token_bytes(finer, tokens) / _token_bytes(contexts, tokens)


def lean_ratios(indices: np.ndarray, palette: near.Palette) -> tuple[float, float]:
    """(left's order, left-above-left's order) bytes ÷ near_rans's."""
    _, levels, _, position = palette.tables
    left, above, above_left, above_right = _neighbours(indices)
    value = indices.reshape(-1).astype(np.int64)
    pattern = (left == above) + 2 * (above == above_right) + 4 * (above_left == above) + 8 * (above_left == left)
    contexts = 3 * pattern + levels[above_left, above_right]
    in_left = position[left, value].astype(np.int64)
    above_in_left = position[left, above].astype(np.int64)
    differs = above != left
    two = np.where(value == left, 0, np.where((value == above) & differs, 1, 1 + differs + in_left - 1 - ((above_in_left < in_left) & differs)))
    real = len(near.encode_near(indices, palette))
    return _coded_bytes(contexts, in_left) / real, _coded_bytes(contexts, two) / real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every third image")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    sets = {"Kodak": kodak_images(), "held-out photo": list(heldout.photos().items())}
    print("| set | K | near_rans kernel, ns a pixel, one thread | PNG-8 load, ns a pixel | kernel ÷ (2 × PNG-8 load) | left's order ÷ near_rans bytes | left, above, left's order ÷ near_rans bytes | WebP-LL load ÷ PNG-8 load "
          "| model alone, ns a pixel | coder alone, ns a pixel | model ÷ (2 × PNG-8 load) | 96 contexts ÷ 48, tokens' bytes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, images in sets.items():
        images = images[::3] if args.quick else images
        for k in KS:
            rows = []
            for _, image in images:
                indices, codebook, paletted = indexed(image.convert("RGB"), k)
                palette = near.Palette(codebook)
                kernel, png = kernel_ns(indices, palette, args.repeat), png_load_ns(paletted, args.repeat)
                webp = webp_load_ns(paletted, args.repeat)
                model, coder = model_ns(indices, palette, args.repeat), coder_ns(indices, palette, args.repeat)
                rows.append((kernel, png, kernel / (2 * png), *lean_ratios(indices, palette), webp / png, model, coder, model / (2 * png), finer_ratio(indices, palette)))
            columns = list(zip(*rows))
            cells = [f"{geomean(column):.2f} ({min(column):.2f}-{max(column):.2f})" for column in columns[:2]]
            cells += [f"{geomean(column):.2f} × (up to {max(column):.2f})" for column in columns[2:3]]
            cells += [f"{geomean(column):.3f} (worst {max(column):.3f})" for column in columns[3:5]]
            cells += [f"{geomean(column):.2f} × ({min(column):.2f}-{max(column):.2f})" for column in columns[5:6]]
            cells += [f"{geomean(column):.2f} ({min(column):.2f}-{max(column):.2f})" for column in columns[6:8]]
            cells += [f"{geomean(column):.2f} × ({min(column):.2f}-{max(column):.2f})" for column in columns[8:9]]
            cells += [f"{geomean(column):.3f} ({min(column):.3f}-{max(column):.3f})" for column in columns[9:]]
            print(f"| {name} | {k} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
