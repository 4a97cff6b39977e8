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
  near_rans's 48 contexts. Measured: its bytes (streams, states, models, counts) ÷
  near_rans's, the streams' decoding and the model pass, ns a pixel on one thread, both with
  the checks a reader needs (words, tokens and ranks within bounds), against near_rans's
  kernel and PNG-8's whole load (open + convert to RGB), all timed in turns; the model pass is
  also timed written without branches, where each pixel waits for the chain of look-ups from
  its left neighbour's index. Nearest-entry indices of Pillow's median cut, as in
  `near_floor.py`.
- **zstd's streams**: the runs of zstd's strips (flags and literals), each literal written as
  the lean model's symbol and sent to the stream of its context (16 patterns of equal
  neighbours, or near_rans's 48 contexts), each stream one zstd frame at the runs' level:
  zstd's entropy coder decodes it, and a pass like the model's above would restore the
  indices (not timed here). Bytes ÷ the index stream of zstd's file, cut into the same strips
  (KMQ's own k-means indices, `compression="zstd"`: the default's strips but for the few
  photos `"auto"` near codes).

Photos only: the Kodak set (tuning) and the held-out photos (never tuned on), K = 16, 64, 256.

    python benchmarks/split_streams.py           # both sets
    python benchmarks/split_streams.py --quick   # every third image
"""

from __future__ import annotations

import argparse
import io

import heldout
import numpy as np
import zstandard
from common import best_times, geomean, kodak_images, saved_kmq
from near_floor import indexed
from numba import njit
from PIL import Image

from pil_kmq import coding, near
from pil_kmq.codec import decode_bytes
from pil_kmq.decoding import RUNS_HEAD_SIZE
from pil_kmq.format import Header, IndexCoding

KS = (16, 64, 256)
PATTERNS = 16  # near_rans's patterns of equal neighbours ...
LEVELS = near.CONTEXTS // PATTERNS  # ... each in 3 levels of colour difference
_OK, _CUT, _PAST_STREAM, _BAD_RANK = 0, 1, 2, 3


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
    """near_rans's context: the pattern of equal neighbours, then the level of above-left and above-right's difference."""
    pattern = (left == above) + 2 * (above == above_right) + 4 * (above_left == above) + 8 * (above_left == left)
    return LEVELS * pattern + int(levels[above_left, above_right])


@njit(cache=True, nogil=True, inline="always")
def _lean_symbol(position: np.ndarray, left: int, above: int, value: int) -> int:
    """0 for left's index; where above differs, 1 for above's and the rank in left's order
    one up, less one past above's own rank, so that no symbol is spent on above twice.
    Ranks start at 1: entry `left` is first in its own order (the codebook's colours distinct)."""
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
    """Each symbol as near_rans's token and the extra bits it leaves."""
    for at in range(symbols.size):
        token, bits = near._token(int(symbols[at]))
        tokens[at] = token
        extras[at] = symbols[at] & ((1 << bits) - 1)


@njit(cache=True, nogil=True)
def _decode_stream(words: np.ndarray, state: int, count: int, frequency: np.ndarray, start: np.ndarray, slots: np.ndarray, out: np.ndarray, at: int) -> int:
    """`count` symbols of one stream into out[at:], one frequency table for them all: a status."""
    cursor = 0
    for i in range(count):
        slot = state & (near.PROB_SCALE - 1)
        token = int(slots[slot])
        state = int(frequency[token]) * (state >> near.PROB_BITS) + slot - int(start[token])
        if state < near.STATE_LOW:
            if cursor >= words.size:
                return _CUT
            state = (state << 16) | int(words[cursor])
            cursor += 1
        symbol = token
        if token >= near.DIRECT_SYMBOLS:
            bits = near._extra_bits(token)
            symbol = (1 << (bits + 1)) | (((token - near.DIRECT_SYMBOLS) & 1) << bits) | (state & ((1 << bits) - 1))
            state >>= bits
            if state < near.STATE_LOW:
                if cursor >= words.size:
                    return _CUT
                state = (state << 16) | int(words[cursor])
                cursor += 1
        out[at + i] = symbol
    return _OK


@njit(cache=True, nogil=True)
def _model_pass(symbols: np.ndarray, firsts: np.ndarray, ends: np.ndarray, levels: np.ndarray, order: np.ndarray, position: np.ndarray, out: np.ndarray) -> int:
    """The indices from the streams' symbols (context c's from firsts[c] to ends[c]), with
    branches: a status."""
    height, width = out.shape
    k = order.shape[0]
    next_of = firsts.copy()
    for y in range(height):
        for x in range(width):
            left, above, above_left, above_right = _around(out, y, x, width)
            context = _lean_context(levels, left, above, above_left, above_right)
            at = next_of[context]
            if at >= ends[context]:
                return _PAST_STREAM
            symbol = symbols[at]
            next_of[context] = at + 1
            if symbol == 0:
                value = left
            elif above == left:
                if symbol >= k:
                    return _BAD_RANK
                value = order[left, symbol]
            elif symbol == 1:
                value = above
            else:
                rank = symbol - 1
                rank += rank >= position[left, above]
                if rank >= k:
                    return _BAD_RANK
                value = order[left, rank]
            out[y, x] = value
    return _OK


@njit(cache=True, nogil=True)
def _model_pass_flat(symbols: np.ndarray, firsts: np.ndarray, ends: np.ndarray, levels: np.ndarray, order: np.ndarray, position: np.ndarray, out: np.ndarray) -> int:
    """_model_pass with each choice a select, not a branch (the checks' branches are never
    taken): what remains is the chain from the left neighbour's index to the next one's
    (context, the stream's next place, its symbol, the entry in left's order)."""
    height, width = out.shape
    k = order.shape[0]
    next_of = firsts.copy()
    for y in range(height):
        for x in range(width):
            left, above, above_left, above_right = _around(out, y, x, width)
            context = _lean_context(levels, left, above, above_left, above_right)
            at = next_of[context]
            if at >= ends[context]:
                return _PAST_STREAM
            symbol = np.int64(symbols[at])
            next_of[context] = at + 1
            differs = np.int64(above != left)
            rank = symbol - differs
            rank += np.int64((rank >= np.int64(position[left, above])) & (differs == 1))
            if rank >= k:
                return _BAD_RANK
            value = np.int64(order[left, max(rank, 0)])  # rank -1 (symbol 0) is not used
            value = above if (symbol == 1) & (differs == 1) else value
            out[y, x] = left if symbol == 0 else value
    return _OK


class Split:
    """The split streams of one image's lean symbols: coded, then decoded stage by stage."""

    def __init__(self, indices: np.ndarray, palette: near.Palette) -> None:
        _, self.levels, self.order, self.position = palette.tables
        self.shape, self.dtype = indices.shape, indices.dtype
        symbols, contexts = np.empty(indices.size, np.int64), np.empty(indices.size, np.int64)
        _lean_symbols(indices, self.levels, self.position, symbols, contexts)
        tokens, extras = np.empty(symbols.size, np.uint8), np.empty(symbols.size, np.uint16)  # near_rans's own types
        _tokens(symbols, tokens, extras)
        self.streams, self.bytes = [], 0
        counts = np.bincount(contexts, minlength=near.CONTEXTS)
        self.ends = np.cumsum(counts)
        self.firsts = self.ends - counts
        for context in range(near.CONTEXTS):
            chosen = contexts == context
            self._code(tokens[chosen], extras[chosen])
        self.symbols = np.empty(indices.size, np.int64)

    def _code(self, tokens: np.ndarray, extras: np.ndarray) -> None:
        """One context's stream, and its bytes as a reader would need them."""
        if not tokens.size:
            self.bytes += 1  # token_count 0, as near_rans stores an unused context
            return
        frequency = near.normalized(np.bincount(tokens, minlength=near.TOKENS))
        start = np.zeros_like(frequency)
        np.cumsum(frequency[:-1], out=start[1:])
        words = np.empty(2 * tokens.size + 2, np.uint16)
        # near_rans's own coder, given one context: the stream is what near_rans would write
        state, written = near._rans_encode(tokens, extras, np.zeros(tokens.size, np.uint8), frequency[None], start[None], words)
        slots = np.repeat(np.arange(near.TOKENS, dtype=np.uint8), frequency)
        self.streams.append((words[:written][::-1].copy(), state, tokens.size, frequency, start, slots))
        # where near_rans has one state and one stream, each context has its own, and a count
        # of its tokens (up to 3 bytes, a varint) tells where its stream ends
        self.bytes += 2 * written + 4 + len(near.pack_model(frequency[None])) + 3

    def decode_streams(self) -> None:
        """Every stream's symbols into self.symbols, in context order."""
        at = 0
        for words, state, count, frequency, start, slots in self.streams:
            if _decode_stream(words, state, count, frequency, start, slots, self.symbols, at) != _OK:
                raise ValueError("a stream ran out of words")
            at += count

    def model(self, out: np.ndarray, flat: bool = False) -> None:
        """The indices, from the decoded symbols, into out."""
        status = (_model_pass_flat if flat else _model_pass)(self.symbols, self.firsts, self.ends, self.levels, self.order, self.position, out)
        if status != _OK:
            raise ValueError(f"model pass status {status}")


def distinct(codebook: np.ndarray) -> None:
    """The lean symbols need each entry first in its own colour order: no two entries alike."""
    if len(np.unique(codebook, axis=0)) != len(codebook):
        raise ValueError("the codebook has entries of the same colour")


def split_row(image: Image.Image, k: int, repeat: int) -> tuple[float, ...]:
    """(bytes ÷ near_rans, then ns a pixel: streams, model, model without branches,
    near_rans's kernel, PNG-8's load), the times best of `repeat`, taken in turns."""
    indices, codebook, paletted = indexed(image, k)
    distinct(codebook)
    palette = near.Palette(codebook)
    split = Split(indices, palette)
    out = np.empty(split.shape, split.dtype)
    split.decode_streams()
    for flat in (False, True):
        split.model(out, flat)
        assert np.array_equal(out, indices)
    payload = near.encode_near(indices, palette)
    kernels = [near.NearStrip(payload, palette, indices.shape[1], len(codebook), "strip") for _ in range(repeat)]  # made before timing
    flat_out = np.empty(indices.size, indices.dtype)
    buffer = io.BytesIO()
    paletted.save(buffer, "PNG", optimize=True)
    png = buffer.getvalue()
    times = best_times(
        (
            split.decode_streams,
            lambda: split.model(out),
            lambda: split.model(out, True),
            lambda: kernels.pop().decode(flat_out),
            lambda: Image.open(io.BytesIO(png)).convert("RGB"),
        ),
        repeat,
    )
    assert np.array_equal(flat_out, indices.reshape(-1))
    return split.bytes / len(payload), *(1e9 * seconds / indices.size for seconds in times)


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
            _, above, above_left, above_right = _around(indices, y, x, width)
            left = before  # in the runs' order a row's first pixel follows the row above's last
            contexts[found] = _lean_context(levels, left, above, above_left, above_right)
            symbols[found] = _lean_symbol(position, left, above, value)
            found += 1
    return found


def _varint_bytes(value: int) -> int:
    return max(1, -(-value.bit_length() // 7))


def _strip_height(data: bytes, header: Header) -> int:
    """The strip height of zstd's file, as its writer cut it (a drawn-looking photo in one strip)."""
    if header.index_coding != IndexCoding.STRIPS:
        return header.height
    offset = header.index_stream_offset
    return int.from_bytes(data[offset : offset + coding.STRIP_HEAD_SIZE], "big")


def zstd_split_ratios(image: Image.Image, k: int) -> tuple[float, float]:
    """Bytes of runs whose literals go to zstd frames by context (16 patterns; 48 contexts)
    ÷ the index stream of zstd's file, cut into its strips."""
    data = saved_kmq(image, k, "zstd")
    header, quantized = decode_bytes(data)
    distinct(quantized.codebook)
    _, levels, _, position = near.Palette(quantized.codebook).tables
    indices = quantized.indices
    strip_height = _strip_height(data, header)
    compressor = zstandard.ZstdCompressor(level=coding.ZSTD_LEVEL)
    table = coding.table_size(header.height, strip_height)
    totals = [table, table]
    for top in range(0, header.height, strip_height):
        strip = indices[top : top + strip_height]
        flags, _ = coding._runs_streams(strip, coding._run_flags(strip), 8)
        symbols, contexts = np.empty(strip.size, np.uint8), np.empty(strip.size, np.int64)
        found = _literal_symbols(strip, levels, position, symbols, contexts)
        symbols, contexts = symbols[:found], contexts[:found]
        for number, (groups, count) in enumerate(((contexts // LEVELS, PATTERNS), (contexts, near.CONTEXTS))):
            sizes = [len(compressor.compress(symbols[groups == group].tobytes())) for group in np.unique(groups)]
            # which groups have a frame (a bit each), each frame's length, the strip's first index
            frames = -(-count // 8) + sum(size + _varint_bytes(size) for size in sizes) + 1
            totals[number] += RUNS_HEAD_SIZE + len(compressor.compress(flags)) + frames
    return totals[0] / header.index_stream_length, totals[1] / header.index_stream_length


COLUMNS = (
    "split ÷ near_rans bytes", "streams, ns a pixel", "model pass, ns a pixel", "model pass without branches", "streams + model", "near_rans kernel",
    "PNG-8 load, ns a pixel", "(streams + model) ÷ (2 × PNG-8 load)", "model ÷ (2 × PNG-8 load)", "zstd's streams by 16 patterns ÷ zstd's bytes", "by 48 contexts",
)


def row_of(image: Image.Image, k: int, repeat: int) -> tuple[float, ...]:
    """One image's values, in COLUMNS' order."""
    ratio, streams, model, flat, kernel, png = split_row(image.convert("RGB"), k, repeat)
    return ratio, streams, model, flat, streams + model, kernel, png, (streams + model) / (2 * png), model / (2 * png), *zstd_split_ratios(image, k)


def cells(rows: list[tuple[float, ...]]) -> list[str]:
    """Geometric mean (least-most) of each column, ratios of bytes to 3 places, times to 2."""
    texts = []
    for at, column in enumerate(zip(*rows)):
        places, unit = (3, "") if at in (0, 9, 10) else (2, " ×" if at in (7, 8) else "")
        texts.append(f"{geomean(column):.{places}f}{unit} ({min(column):.{places}f}-{max(column):.{places}f})")
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every third image")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    sets = {"Kodak": kodak_images(), "held-out photo": list(heldout.photos().items())}
    print("| set | K | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, images in sets.items():
        images = images[::3] if args.quick else images
        for k in KS:
            rows = [row_of(image, k, args.repeat) for _, image in images]
            print(f"| {name} | {k} | " + " | ".join(cells(rows)) + " |", flush=True)


if __name__ == "__main__":
    main()
