"""A lean index model whose entropy coder is out of the pixel chain: what it would cost and save.

near_rans decodes each pixel's token in a context made from the pixels already decoded, so
every coder step waits for the model's last answer (`near_floor.py`). Two designs take the
coder out of that chain, and this script measures both against what the default and
`compression="near"` write today:

- **split streams**: every context's tokens in a stream of their own (a static rANS coder
  each, near_rans's tokens, 12-bit frequencies), so that all streams decode first, in tight
  loops with one frequency table each, and a model pass then takes each pixel's next token
  from its context's stream. The model is the lean one of `near_floor.py` ("left, above, left's
  order": 0 for the left neighbour's index, 1 for the one above where it differs, else the
  rank among the entries ordered by colour from the left neighbour's, past those two) in
  near_rans's 48 contexts. Measured: its bytes (streams, states, models and counts) ÷
  near_rans's, the streams' decoding and the model pass, ns a pixel on one thread, against
  near_rans's kernel and PNG-8's whole load (open + convert to RGB); the model pass is also
  timed written without branches, where each pixel waits only for its left neighbour's chain
  of look-ups. Nearest-entry indices of Pillow's median cut, as in `near_floor.py`.
- **zstd's streams**: the default's runs (flags and literals), each literal written as the lean
  model's symbol and sent to the stream of its context (16 patterns of equal neighbours, or
  near_rans's 48 contexts), each stream one zstd frame at the default's level: zstd's entropy
  coder decodes it, and a pass like the model's above restores the indices. Bytes ÷ the index
  stream of zstd's file (KMQ's own k-means indices, `compression="zstd"`: the default's
  strips but for the few photos `"auto"` near codes).

Photos only: the Kodak set (tuning) and the held-out photos (never tuned on), K = 16, 64, 256.

    python benchmarks/split_streams.py           # both sets
    python benchmarks/split_streams.py --quick   # every third image
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import heldout
import numpy as np
import zstandard
from common import geomean, kodak_images
from near_floor import indexed, kernel_ns, png_load_ns
from numba import njit
from PIL import Image

from pil_kmq import coding, near
from pil_kmq.codec import decode_bytes
from pil_kmq.decoding import RUNS_HEAD_SIZE

KS = (16, 64, 256)
PATTERNS = 16


@njit(cache=True, nogil=True, inline="always")
def _around(rows: np.ndarray, y: int, x: int, width: int) -> tuple[int, int, int, int]:
    """left, above, above-left, above-right of (y, x), with near_rans's edge rules."""
    if y > 0:
        above = int(rows[y - 1, x])
        left = int(rows[y, x - 1]) if x > 0 else above
        above_left = int(rows[y - 1, x - 1]) if x > 0 else above
        above_right = int(rows[y - 1, x + 1]) if x + 1 < width else above
        return left, above, above_left, above_right
    left = int(rows[y, x - 1]) if x > 0 else 0
    return left, left, left, left


@njit(cache=True, nogil=True, inline="always")
def _lean_context(levels: np.ndarray, left: int, above: int, above_left: int, above_right: int) -> int:
    pattern = (left == above) + 2 * (above == above_right) + 4 * (above_left == above) + 8 * (above_left == left)
    return 3 * pattern + int(levels[above_left, above_right])


@njit(cache=True, nogil=True, inline="always")
def _lean_symbol(position: np.ndarray, left: int, above: int, value: int) -> int:
    if value == left:
        return 0
    if above == left:
        return int(position[left, value])
    if value == above:
        return 1
    rank = int(position[left, value])
    return 1 + rank - (int(position[left, above]) < rank)


@njit(cache=True)
def _lean_symbols(indices: np.ndarray, levels: np.ndarray, position: np.ndarray, symbols: np.ndarray, contexts: np.ndarray) -> None:
    """Every pixel's lean symbol and its near_rans context, in pixel order."""
    height, width = indices.shape
    at = 0
    for y in range(height):
        for x in range(width):
            left, above, above_left, above_right = _around(indices, y, x, width)
            contexts[at] = _lean_context(levels, left, above, above_left, above_right)
            symbols[at] = _lean_symbol(position, left, above, int(indices[y, x]))
            at += 1


@njit(cache=True)
def _tokens(symbols: np.ndarray, tokens: np.ndarray, extras: np.ndarray) -> None:
    for at in range(symbols.size):
        token, bits = near._token(int(symbols[at]))
        tokens[at] = token
        extras[at] = symbols[at] & ((1 << bits) - 1)


@njit(cache=True)
def _encode_stream(tokens: np.ndarray, extras: np.ndarray, frequency: np.ndarray, start: np.ndarray, words: np.ndarray) -> tuple[int, int]:
    """near_rans's static rANS coding of one context's tokens (in reverse): (state, words)."""
    state, written = near.STATE_LOW, 0
    for at in range(tokens.size - 1, -1, -1):
        token = int(tokens[at])
        bits = near._extra_bits(token)
        if bits:
            if state >= 1 << (32 - bits):
                words[written] = state & 0xFFFF
                written += 1
                state >>= 16
            state = (state << bits) | int(extras[at])
        f = int(frequency[token])
        if state >= (near.STATE_LOW >> near.PROB_BITS << 16) * f:
            words[written] = state & 0xFFFF
            written += 1
            state >>= 16
        state = (state // f << near.PROB_BITS) + state % f + int(start[token])
    return state, written


@njit(cache=True, nogil=True)
def _decode_stream(words: np.ndarray, state: int, count: int, frequency: np.ndarray, start: np.ndarray, slots: np.ndarray, out: np.ndarray, at: int) -> None:
    """`count` symbols of one stream into out[at:], one frequency table for them all."""
    cursor = 0
    for i in range(count):
        slot = state & (near.PROB_SCALE - 1)
        token = int(slots[slot])
        state = int(frequency[token]) * (state >> near.PROB_BITS) + slot - int(start[token])
        if state < near.STATE_LOW:
            state = (state << 16) | int(words[cursor])
            cursor += 1
        symbol = token
        if token >= near.DIRECT_SYMBOLS:
            bits = near._extra_bits(token)
            symbol = (1 << (bits + 1)) | (((token - near.DIRECT_SYMBOLS) & 1) << bits) | (state & ((1 << bits) - 1))
            state >>= bits
            if state < near.STATE_LOW:
                state = (state << 16) | int(words[cursor])
                cursor += 1
        out[at + i] = symbol


@njit(cache=True, nogil=True)
def _model_pass(symbols: np.ndarray, firsts: np.ndarray, levels: np.ndarray, order: np.ndarray, position: np.ndarray, out: np.ndarray) -> None:
    """The indices from the streams' symbols (context c's from firsts[c] on), with branches."""
    height, width = out.shape
    next_of = firsts.copy()
    for y in range(height):
        for x in range(width):
            left, above, above_left, above_right = _around(out, y, x, width)
            context = _lean_context(levels, left, above, above_left, above_right)
            symbol = symbols[next_of[context]]
            next_of[context] += 1
            if symbol == 0:
                value = left
            elif above == left:
                value = order[left, symbol]
            elif symbol == 1:
                value = above
            else:
                rank = symbol - 1
                value = order[left, rank + (rank >= position[left, above])]
            out[y, x] = value


@njit(cache=True, nogil=True)
def _model_pass_flat(symbols: np.ndarray, firsts: np.ndarray, levels: np.ndarray, order: np.ndarray, position: np.ndarray, out: np.ndarray) -> None:
    """_model_pass with each choice a select, not a branch: what remains is the chain from
    the left neighbour's index to the next one's (context, stream, symbol, order)."""
    height, width = out.shape
    next_of = firsts.copy()
    for y in range(height):
        for x in range(width):
            left, above, above_left, above_right = _around(out, y, x, width)
            context = _lean_context(levels, left, above, above_left, above_right)
            at = next_of[context]
            symbol = np.int64(symbols[at])
            next_of[context] = at + 1
            differs = np.int64(above != left)
            rank = symbol - differs
            rank += np.int64((rank >= np.int64(position[left, above])) & (differs == 1))
            value = np.int64(order[left, min(rank, order.shape[1] - 1)])
            value = above if (symbol == 1) & (differs == 1) else value
            out[y, x] = left if symbol == 0 else value


class Split:
    """The split streams of one image's lean symbols: coded, then decoded stage by stage."""

    def __init__(self, indices: np.ndarray, palette: near.Palette) -> None:
        _, self.levels, self.order, self.position = palette.tables
        self.shape, self.dtype = indices.shape, indices.dtype
        symbols, contexts = np.empty(indices.size, np.int64), np.empty(indices.size, np.int64)
        _lean_symbols(indices, self.levels, self.position, symbols, contexts)
        tokens, extras = np.empty_like(symbols), np.empty_like(symbols)
        _tokens(symbols, tokens, extras)
        self.streams, self.bytes = [], 0
        self.firsts = np.zeros(near.CONTEXTS, np.int64)
        at = 0
        for context in range(near.CONTEXTS):
            chosen = contexts == context
            self.firsts[context] = at
            at += int(chosen.sum())
            if chosen.any():
                self._code(tokens[chosen], extras[chosen])
        self.symbols = np.empty(indices.size, np.int64)

    def _code(self, tokens: np.ndarray, extras: np.ndarray) -> None:
        frequency = near.normalized(np.bincount(tokens, minlength=near.TOKENS))
        start = np.zeros_like(frequency)
        np.cumsum(frequency[:-1], out=start[1:])
        words = np.empty(2 * tokens.size + 2, np.uint16)
        state, written = _encode_stream(tokens, extras, frequency, start, words)
        slots = np.repeat(np.arange(near.TOKENS, dtype=np.uint8), frequency)
        self.streams.append((words[:written][::-1].copy(), state, tokens.size, frequency, start, slots))
        # the words, the state, the model as near_rans stores it, a count of up to 3 bytes
        self.bytes += 2 * written + 4 + len(near.pack_model(frequency[None])) + 3

    def decode_streams(self) -> None:
        at = 0
        for words, state, count, frequency, start, slots in self.streams:
            _decode_stream(words, state, count, frequency, start, slots, self.symbols, at)
            at += count

    def model(self, out: np.ndarray, flat: bool = False) -> None:
        (_model_pass_flat if flat else _model_pass)(self.symbols, self.firsts, self.levels, self.order, self.position, out)


def best_ns(action: Callable[[], object], pixels: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return 1e9 * best / pixels


def split_row(image: Image.Image, k: int, repeat: int) -> tuple[float, ...]:
    """(bytes ÷ near_rans, streams ns, model ns, model without branches ns, near_rans kernel
    ns, PNG-8 load ns) a pixel."""
    indices, codebook, paletted = indexed(image, k)
    palette = near.Palette(codebook)
    split = Split(indices, palette)
    out = np.empty(split.shape, split.dtype)
    split.decode_streams()
    for flat in (False, True):
        split.model(out, flat)
        assert np.array_equal(out, indices)
    pixels = indices.size
    streams = best_ns(split.decode_streams, pixels, repeat)
    model = best_ns(lambda: split.model(out), pixels, repeat)
    flat = best_ns(lambda: split.model(out, True), pixels, repeat)
    return split.bytes / len(near.encode_near(indices, palette)), streams, model, flat, kernel_ns(indices, palette, repeat), png_load_ns(paletted, repeat)


@njit(cache=True)
def _literal_symbols(indices: np.ndarray, levels: np.ndarray, position: np.ndarray, symbols: np.ndarray, contexts: np.ndarray) -> int:
    """The lean symbols and contexts of a runs strip's literals (pixels unlike the pixel
    before them in the joined rows, the first pixel left out): returns how many."""
    height, width = indices.shape
    found = 0
    for y in range(height):
        for x in range(width):
            if x == 0 and y == 0:
                continue
            before = int(indices[y, x - 1]) if x else int(indices[y - 1, width - 1])
            value = int(indices[y, x])
            if value == before:
                continue
            left, above, above_left, above_right = _around(indices, y, x, width)
            left = before  # the runs' order: a row's first pixel follows the row above's last
            contexts[found] = _lean_context(levels, left, above, above_left, above_right)
            symbols[found] = _lean_symbol(position, left, above, value)
            found += 1
    return found


def zstd_split_ratios(image: Image.Image, k: int) -> tuple[float, float]:
    """Bytes of runs whose literals go to zstd frames by context (16 patterns; 48 contexts)
    ÷ the index stream of the file `compression="zstd"` writes (the default's for most photos)."""
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", k=k, compression="zstd")
    header, quantized = decode_bytes(buffer.getvalue())
    _, levels, _, position = near.Palette(quantized.codebook).tables
    indices = quantized.indices
    height, width = indices.shape
    compressor = zstandard.ZstdCompressor(level=coding.ZSTD_LEVEL)
    strip_height = coding.strip_height_for(width, height)
    table = coding.table_size(height, strip_height)
    totals = [table, table]
    for top in range(0, height, strip_height):
        strip = indices[top : top + strip_height]
        flags, _ = coding._runs_streams(strip, coding._run_flags(strip), 8)
        symbols, contexts = np.empty(strip.size, np.uint8), np.empty(strip.size, np.int64)
        found = _literal_symbols(strip, levels, position, symbols, contexts)
        symbols, contexts = symbols[:found], contexts[:found]
        for number, groups in enumerate((contexts // 3, contexts)):
            # each frame with 2 bytes for its length, and the strip's first index
            frames = sum(len(compressor.compress(symbols[groups == group].tobytes())) + 2 for group in np.unique(groups))
            totals[number] += RUNS_HEAD_SIZE + len(compressor.compress(flags)) + frames + 1
    return totals[0] / header.index_stream_length, totals[1] / header.index_stream_length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every third image")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    sets = {"Kodak": kodak_images(), "held-out photo": list(heldout.photos().items())}
    print("| set | K | split ÷ near_rans bytes | streams, ns a pixel | model pass, ns a pixel | model pass without branches | streams + model | near_rans kernel | "
          "(streams + model) ÷ (2 × PNG-8 load) | model ÷ (2 × PNG-8 load) | zstd's streams by 16 patterns ÷ zstd's bytes | by 48 contexts |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, images in sets.items():
        images = images[::3] if args.quick else images
        for k in KS:
            rows = []
            for _, image in images:
                ratio, streams, model, flat, kernel, png = split_row(image.convert("RGB"), k, args.repeat)
                rows.append((ratio, streams, model, flat, streams + model, kernel, (streams + model) / (2 * png), model / (2 * png), *zstd_split_ratios(image, k)))
            columns = list(zip(*rows))
            cells = [f"{geomean(columns[0]):.3f} ({min(columns[0]):.3f}-{max(columns[0]):.3f})"]
            cells += [f"{geomean(column):.2f} ({min(column):.2f}-{max(column):.2f})" for column in columns[1:6]]
            cells += [f"{geomean(column):.2f} × ({min(column):.2f}-{max(column):.2f})" for column in columns[6:8]]
            cells += [f"{geomean(column):.3f} ({min(column):.3f}-{max(column):.3f})" for column in columns[8:]]
            print(f"| {name} | {k} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
