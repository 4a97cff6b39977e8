"""The `near_rans` strip (spec 7.2, "Near"): each index coded by where it stands among its
neighbours' indices, then among the codebook's entries ordered by colour distance from a
predicted entry (above COLOUR_ORDER_K entries, by index distance), with a static range-ANS
coder whose frequencies depend on a context of the neighbours. Knows nothing of Pillow; the
spec is the reference for every step here.

A `near_flat` strip (spec 7.2, "Flat stretches") is coded the same way but for flat stretches
(all four neighbours one entry, and as the row above says, for MIN_STRETCH pixels or more),
each one symbol: how many pixels short of its length it stops. A drawing's flat areas then
cost a symbol a stretch, not a coder step a pixel (benchmarks/near_flat.py).

Why: the runs of the other methods look only to the left; a photo's next index is usually
one of its four neighbours' or a colour near theirs, which this model turns into small
symbols (13 % fewer bytes than runs on the Kodak set). A static coder (frequencies stored
per strip) decodes a symbol with one table lookup, and the kernels are compiled: no Python
work per pixel. numba checks no bounds: every size a kernel relies on is checked here or in
the kernel, so no file can make one read or write past an array.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
from numba import njit

from .format import KmqError, index_dtype
from .jobs import side_by_side

CONTEXTS = 48  # 16 patterns of equal neighbours x 3 levels of colour difference
TOKENS = 32  # symbols 0 … 15 as themselves, then 2 tokens an octave up to 4095
DIRECT_SYMBOLS = 16
PROB_BITS = 12
PROB_SCALE = 1 << PROB_BITS  # each context's frequencies sum to this
STATE_LOW = 1 << 16  # the coder's state stays in [STATE_LOW, 2**32) between symbols
MAX_K = 4096  # near_rans needs bits_per_index <= 12
# Up to COLOUR_ORDER_K entries the order past the neighbours is by colour distance, and a
# reader builds all k x k orders (~9 MB at its peak, ~6 ms at 1,024). Above, it is by index
# distance, which needs no table: a drawing's exact colours come sorted, so index distance
# follows colour distance well enough. On five tuning drawings of 1,110 to 2,886 colours,
# orders by colour made near_rans strips 0.4-4.3 % smaller (three held-out graphics: 1.4-2.4 %),
# and a reader needs nearly every one of them (~0.4 s and 70 MB at 2,934 entries, even made
# as pixels first need them).
COLOUR_ORDER_K = 1024
# Above this many entries the tables are made in two halves of the rows side by side, where a
# worker is spare (jobs.side_by_side): from here the halves took less time than the whole on
# average (benchmarks/near_tables.py), and at 512 and more they took loads' time down.
SPLIT_TABLES_K = 256
# A reader holds a near_rans strip's payload whole: strips are kept to the size a drawing's
# strip has (coding.DRAWING_STRIP_PIXELS), so that stays a few MB whatever the file says.
NEAR_MAX_PIXELS = 1 << 22
ACTIVITY_LEVELS = (16, 256)  # squared colour difference of left and above: <= 16, <= 256, more
FLAT_CONTEXT = 3 * 15  # all four neighbours equal (pattern 15), so no colour difference (level 0)
# near_flat strips (spec 7.2, "Flat stretches") add two contexts: a stretch's one symbol (how
# many pixels short of its end it stops), and the pixel that stops it (never its left neighbour).
STRETCH_CONTEXT = CONTEXTS
INTERRUPT_CONTEXT = CONTEXTS + 1
NEAR_FLAT_TABLES = CONTEXTS + 2
MAX_STRETCH = 4095  # the largest symbol a token holds
MIN_STRETCH = 16  # shorter flat stretches are coded a pixel at a time, as near_rans codes them


def token_limit(k: int) -> int:
    """The most tokens a context's table may have for a codebook of k entries: those of the
    symbols below 2 ** max(8, bits_per_index) (24 up to 256 entries, 26 to 512, ... 32 to 4,096)."""
    return DIRECT_SYMBOLS + 2 * (max(8, (k - 1).bit_length()) - 4)


@njit(cache=True, nogil=True, inline="always")
def tokens_allowed(context: int, limit: int) -> int:
    """The most tokens a table may have: token_limit(k) (`limit`), but every token for
    near_flat's stretch table, whose symbols go to MAX_STRETCH whatever k is."""
    return TOKENS if context == STRETCH_CONTEXT else limit


# --- errors a kernel reports (its status) --------------------------------------------------
_OK, _NO_CONTEXT, _BAD_RANK, _NO_WORDS, _LONG_STRETCH = 0, 1, 2, 3, 4


Tables = tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]


class Palette:
    """A codebook as the near_rans kernels use it: colours padded to 4 channels (zeros add
    nothing to a squared distance), each pair's level of colour difference, and the colour
    orders (entries by distance from each entry). Made on first use: only files with
    near_rans strips pay for them, once per image, not per strip."""

    def __init__(self, codebook: np.ndarray) -> None:
        self.codebook = codebook
        self._lock = threading.Lock()
        self._tables: Tables | None = None

    @property
    def tables(self) -> Tables:
        """(colours, levels, order, position): order[p] = entries by (squared distance from
        entry p, index), position its inverse; levels[a, b] = 0, 1 or 2 by their distance.
        Above COLOUR_ORDER_K all but colours are None (numba then compiles the kernels for
        the index order, a level worked out per pixel)."""
        # Held while palette_tables may wait on the pool: it sends a half there only where the
        # pool is idle (jobs.spare_worker), so no job there can be waiting on this lock.
        with self._lock:
            if self._tables is None:
                self._tables = palette_tables(self.codebook)
            return self._tables


def split_tables(k: int) -> bool:
    """Whether a codebook of k entries has tables made in halves side by side (SPLIT_TABLES_K)."""
    return SPLIT_TABLES_K < k <= COLOUR_ORDER_K


def coding_palette(codebook: np.ndarray) -> Palette:
    """The Palette a writer near codes strips with, its tables made here where they are split
    (split_tables), before strips are coded on the pool: made in a strip's job, one core made
    them while the other's job waited for them."""
    palette = Palette(codebook)
    if split_tables(len(codebook)):
        palette.tables  # noqa: B018 - made and kept
    return palette


def palette_tables(codebook: np.ndarray) -> Tables:
    """The tables of Palette.tables, for k <= MAX_K entries of 1 to 4 channels."""
    k, channels = codebook.shape
    if not 1 <= k <= MAX_K or not 1 <= channels <= 4:
        raise ValueError(f"near coding needs 1 to {MAX_K} codebook entries of 1 to 4 channels, not {codebook.shape}")
    colours = _padded(codebook)
    if k > COLOUR_ORDER_K:
        return colours, None, None, None
    # a look-up: on Kodak photos at k = 16 loads took ~5 % longer working each level out
    levels = np.empty((k, k), dtype=np.uint8)
    keys = np.empty((k, k), dtype=np.int32)
    order = np.empty((k, k), dtype=index_dtype(k))
    position = np.empty_like(order)

    def rows(first: int, end: int) -> None:
        _table_rows(colours, levels, keys, order, position, first, end)

    if split_tables(k):
        side_by_side(lambda: rows(0, k // 2), lambda: rows(k // 2, k))
    else:
        rows(0, k)
    return colours, levels, order, position


def _table_rows(colours: np.ndarray, levels: np.ndarray, keys: np.ndarray, order: np.ndarray, position: np.ndarray, first: int, end: int) -> None:
    """Rows first to end of palette_tables' levels, order and position (keys: their sort keys).
    Every step releases the GIL: two parts of the rows can be made at once."""
    _levels_and_keys(colours, levels[first:end], keys[first:end], first)
    part = keys[first:end]
    part.sort(axis=1)
    np.bitwise_and(part, MAX_K - 1, out=order[first:end], casting="unsafe")  # entries < k: index_dtype(k) holds them
    _invert(order[first:end], position[first:end])


def _padded(codebook: np.ndarray) -> np.ndarray:
    """The codebook as int32 colours of 4 channels (zeros add nothing to a squared distance)."""
    colours = np.zeros((len(codebook), 4), dtype=np.int32)
    colours[:, : codebook.shape[1]] = codebook
    return colours


@njit(cache=True, nogil=True)
def _levels_and_keys(colours: np.ndarray, levels: np.ndarray, keys: np.ndarray, first: int) -> None:
    """The rows of entries first, first + 1, ... (as many as levels holds): levels[p, q], the
    level of the squared distance d of entries first + p and q; keys[p, q] = d x MAX_K + q
    (< 2**31, unique: sorted, ties go to the lower index). One pass without temporaries: 5x
    faster than numpy's broadcasting at k = 256 (int32, as the kernels read)."""
    k = colours.shape[0]
    c0, c1, c2, c3 = colours[:, 0].copy(), colours[:, 1].copy(), colours[:, 2].copy(), colours[:, 3].copy()
    low, high, scale = np.int32(ACTIVITY_LEVELS[0]), np.int32(ACTIVITY_LEVELS[1]), np.int32(MAX_K)
    for p in range(levels.shape[0]):
        a0, a1, a2, a3 = c0[first + p], c1[first + p], c2[first + p], c3[first + p]
        level_row, key_row = levels[p], keys[p]
        for q in range(k):
            d0, d1, d2, d3 = a0 - c0[q], a1 - c1[q], a2 - c2[q], a3 - c3[q]
            distance = d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3
            level_row[q] = np.uint8(distance > low) + np.uint8(distance > high)
            key_row[q] = distance * scale + np.int32(q)


@njit(cache=True, nogil=True)
def _invert(order: np.ndarray, position: np.ndarray) -> None:
    """position[p, order[p, r]] = r: a tenth of the time numpy's fancy indexing takes."""
    for p in range(order.shape[0]):
        for r in range(order.shape[1]):
            position[p, order[p, r]] = r


@njit(cache=True, nogil=True, inline="always")
def _rank(position: np.ndarray | None, k: int, anchor: int, entry: int) -> int:
    """entry's place in anchor's order: by colour (the table) or, without one, by index
    distance, ties to the lower index: anchor, anchor - 1, anchor + 1, anchor - 2, ..., the
    side that runs out first left out. (An `is None` test numba resolves as it compiles.)"""
    if position is not None:
        return int(position[anchor, entry])
    if entry == anchor:
        return 0
    step = abs(entry - anchor)
    below, above = anchor, k - 1 - anchor  # entries on each side
    return 1 + min(step - 1, below) + min(step - 1, above) + (entry > anchor and step <= below)


@njit(cache=True, nogil=True, inline="always")
def _entry(order: np.ndarray | None, k: int, anchor: int, rank: int) -> int:
    """The entry at this place (< k) of anchor's order, as _rank counts it."""
    if order is not None:
        return int(order[anchor, rank])
    below, above = anchor, k - 1 - anchor
    if rank <= 2 * min(below, above):
        return anchor - (rank + 1) // 2 if rank & 1 else anchor + rank // 2
    return rank if above > below else k - 1 - rank  # only one side is left


# --- the model shared by both directions ---------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _neighbours(rows: np.ndarray, y: int, x: int, width: int) -> tuple[int, int, int, int]:
    """left, above, above-left, above-right of pixel (y, x) of a strip, with the edge rules."""
    now, before = y & 1, (y + 1) & 1
    if y > 0:
        above = int(rows[before, x])
        left = int(rows[now, x - 1]) if x > 0 else above
        above_left = int(rows[before, x - 1]) if x > 0 else above
        above_right = int(rows[before, x + 1]) if x + 1 < width else above
    else:
        left = int(rows[now, x - 1]) if x > 0 else 0
        above = above_left = above_right = left
    return left, above, above_left, above_right


@njit(cache=True, nogil=True, inline="always")
def _context(colours: np.ndarray, levels: np.ndarray | None, left: int, above: int, above_left: int, above_right: int) -> int:
    pattern = (left == above) + 2 * (above == above_right) + 4 * (above_left == above) + 8 * (above_left == left)
    if levels is not None:
        return 3 * pattern + int(levels[above_left, above_right])
    d0, d1 = colours[above_left, 0] - colours[above_right, 0], colours[above_left, 1] - colours[above_right, 1]
    d2, d3 = colours[above_left, 2] - colours[above_right, 2], colours[above_left, 3] - colours[above_right, 3]
    distance = d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3
    return 3 * pattern + (distance > ACTIVITY_LEVELS[0]) + (distance > ACTIVITY_LEVELS[1])


@njit(cache=True, nogil=True, inline="always")
def _predicted(colours: np.ndarray, left: int, above: int, above_left: int, channel: int) -> int:
    a, b = colours[left, channel], colours[above, channel]
    return min(max(a + b - colours[above_left, channel], min(a, b)), max(a, b))


@njit(cache=True, nogil=True, inline="always")
def _anchor(colours: np.ndarray, left: int, above: int, above_left: int, above_right: int) -> int:
    """Of left, above, above-left, above-right (first on ties), the entry nearest the colour
    predicted from them: left + above - above-left per channel, clamped between left and above."""
    p0 = _predicted(colours, left, above, above_left, 0)
    p1 = _predicted(colours, left, above, above_left, 1)
    p2 = _predicted(colours, left, above, above_left, 2)
    p3 = _predicted(colours, left, above, above_left, 3)
    best, best_distance = left, 1 << 40
    for entry in (left, above, above_left, above_right):
        d0, d1 = p0 - colours[entry, 0], p1 - colours[entry, 1]
        d2, d3 = p2 - colours[entry, 2], p3 - colours[entry, 3]
        distance = d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3
        if distance < best_distance:
            best, best_distance = entry, distance
    return best


@njit(cache=True, nogil=True, inline="always")
def _candidates(left: int, above: int, above_left: int, above_right: int, found: np.ndarray) -> int:
    """The distinct values of left, above, above-right, above-left in that order, into found
    (entries past the count are left over). No branches: whether a neighbour repeats an
    earlier one is as likely as not in a photo, and a mispredicted branch costs more."""
    found[0] = left
    found[1] = above
    count = 1 + (above != left)
    found[count] = above_right
    count += (above_right != left) & (above_right != above)
    found[count] = above_left
    return count + ((above_left != left) & (above_left != above) & (above_left != above_right))


# --- encoding ------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _token(symbol: int) -> tuple[int, int]:
    """(token, number of extra bits): 0 … 15 as themselves, then two tokens an octave, the
    octave's second bit in the token and the bits below it extra."""
    token, bits = symbol, 0
    if symbol >= DIRECT_SYMBOLS:
        octave = 0
        while symbol >> (octave + 1):
            octave += 1
        token, bits = DIRECT_SYMBOLS + 2 * (octave - 4) + ((symbol >> (octave - 1)) & 1), octave - 1
    return token, bits


@njit(cache=True, nogil=True, inline="always")
def _stretch(above_row: np.ndarray, x: int, width: int, value: int, seen: int) -> tuple[int, int]:
    """(length, end) of the flat stretch from column x, whose four neighbours are all `value`:
    length counts the pixels from x on that would have the same four neighbours if every pixel
    before them in the row were `value`, at most MAX_STRETCH (spec 7.2, "Flat stretches"), or
    is 0 where one look at the row above shows it is shorter than MIN_STRETCH (a photo's flat
    spots mostly are). `seen`: the end found for the last stretch of this row and value (-1 if
    none); every column before an end has that end, so a row is scanned once however many
    stretches it holds (a rescan for each took a hostile file 50 x a near_rans pixel's time)."""
    last = x + MIN_STRETCH  # the entry above-right of the stretch's 16th pixel, or the row's end
    if last > width or (last < width and above_row[last] != value):
        return 0, seen
    end = seen
    if x >= end:
        end = x + 1
        while end < width and (end + 1 == width or above_row[end + 1] == value):
            end += 1
    return min(end - x, MAX_STRETCH), end


@njit(cache=True, nogil=True, inline="always")
def _stop_symbol(length: int, same: int) -> int:
    """A stretch's symbol: 0 when all its `length` pixels are its value, else the pixel where it
    stops, counted from both ends in turn: 1 its last pixel, 2 its first, 3 its last but one,
    4 its second, ... (a label map's stretches stop near their end, where the region below
    begins; a speck stops one near its start)."""
    if same == length:
        return 0
    if same >= length // 2:
        return 2 * (length - same) - 1
    return 2 * (same + 1)


@njit(cache=True, nogil=True, inline="always")
def _stopped_at(length: int, symbol: int) -> int:
    """The pixels of value a stretch of `length` has before it stops, from its symbol (<= length)."""
    if symbol == 0:
        return length
    return length - (symbol + 1) // 2 if symbol & 1 else symbol // 2 - 1


def flat_share(indices: np.ndarray) -> float:
    """The share of pixels below the first row and off the edges whose index equals all four
    of their neighbours': where a near_flat strip's stretches can lie."""
    if indices.shape[0] < 2 or indices.shape[1] < 3:
        return 0.0
    middle = indices[1:, 1:-1]
    flat = (middle == indices[1:, :-2]) & (middle == indices[:-1, 1:-1]) & (middle == indices[:-1, :-2]) & (middle == indices[:-1, 2:])
    return float(flat.mean())


@njit(cache=True, nogil=True)
def _symbols(indices: np.ndarray, colours: np.ndarray, levels: np.ndarray | None, order: np.ndarray | None, position: np.ndarray | None, tokens: np.ndarray, extras: np.ndarray, contexts: np.ndarray, stretches: bool, sampled: np.ndarray | None = None) -> int:
    """The tokens, extra bits and contexts of the pixels in pixel order, one a pixel, or with
    `stretches` (near_flat) one a flat stretch below the first row and one for the pixel that
    stops a stretch short (at most two a pixel); of the `sampled` rows only (ascending) if
    given, each with the row above it as its context. Returns how many."""
    height, width = indices.shape
    k = colours.shape[0]
    rows = np.zeros((2, width), dtype=indices.dtype)
    found = np.zeros(4, dtype=np.int64)
    seen_row = seen_value = seen_end = -1  # _stretch's last end, its row and value
    at = 0
    coded_rows = height if sampled is None else sampled.size
    for row in range(coded_rows):
        y = row if sampled is None else int(sampled[row])
        if sampled is not None and y > 0:
            rows[(y + 1) & 1] = indices[y - 1]
        x = 0
        while x < width:
            value = int(indices[y, x])
            left, above, above_left, above_right = _neighbours(rows, y, x, width)
            shift = 0
            length = 0
            if stretches and y > 0 and (left == above) & (above_left == left) & (above_right == left):
                length, end = _stretch(rows[(y + 1) & 1], x, width, left, seen_end if (seen_row == y) & (seen_value == left) else -1)
                seen_row, seen_value, seen_end = y, left, end
            if length >= MIN_STRETCH:
                same = 0
                while same < length and int(indices[y, x + same]) == left:
                    rows[y & 1, x + same] = left
                    same += 1
                stop = _stop_symbol(length, same)
                tokens[at], bits = _token(stop)
                extras[at] = stop & ((1 << bits) - 1)
                contexts[at] = STRETCH_CONTEXT
                at += 1
                x += same
                if same == length:
                    continue
                # the pixel that stops the stretch: its neighbours are all `left`, and it is not
                value, shift = int(indices[y, x]), 1
                contexts[at] = INTERRUPT_CONTEXT
            elif (value == left) & (left == above) & (above_left == left) & (above_right == left):
                # a flat pixel that is its neighbours' entry: token 0 in the flat context (what
                # the steps below give, a third of near_rans's coding time on a label map)
                contexts[at], tokens[at], extras[at] = FLAT_CONTEXT, 0, 0
                rows[y & 1, x] = value
                at += 1
                x += 1
                continue
            else:
                contexts[at] = _context(colours, levels, left, above, above_left, above_right)
            count = _candidates(left, above, above_left, above_right, found)
            symbol = -1  # written out here and in _choose: as an inlined function it took 2x the time
            for j in range(count):
                if found[j] == value:
                    symbol = j
                    break
            if symbol < 0:
                anchor = _anchor(colours, left, above, above_left, above_right)
                rank = _rank(position, k, anchor, value)
                skipped = 0
                for j in range(count):
                    skipped += _rank(position, k, anchor, int(found[j])) < rank
                symbol = count + rank - skipped
            tokens[at], bits = _token(symbol - shift)
            extras[at] = (symbol - shift) & ((1 << bits) - 1)
            rows[y & 1, x] = value
            at += 1
            x += 1
    return at


@njit(cache=True, nogil=True, inline="always")
def _extra_bits(token: int) -> int:
    return 0 if token < DIRECT_SYMBOLS else 3 + (token - DIRECT_SYMBOLS) // 2


@njit(cache=True, nogil=True)
def _rans_encode(tokens: np.ndarray, extras: np.ndarray, contexts: np.ndarray, frequency: np.ndarray, start: np.ndarray, words: np.ndarray) -> tuple[int, int]:
    """Pixels in reverse order (the decoder reads forwards): returns (final state, words
    written); the words come out last first, as emitted."""
    state, written = STATE_LOW, 0
    for at in range(tokens.size - 1, -1, -1):
        token, context = int(tokens[at]), int(contexts[at])
        bits = _extra_bits(token)
        if bits:
            if state >= 1 << (32 - bits):
                words[written] = state & 0xFFFF
                written += 1
                state >>= 16
            state = (state << bits) | int(extras[at])
        f = int(frequency[context, token])
        if state >= (STATE_LOW >> PROB_BITS << 16) * f:
            words[written] = state & 0xFFFF
            written += 1
            state >>= 16
        state = (state // f << PROB_BITS) + state % f + int(start[context, token])
    return state, written


def normalized(counts: np.ndarray) -> np.ndarray:
    """Frequencies summing to PROB_SCALE, at least 1 for every token that occurs, near the counts."""
    total = int(counts.sum())
    if not total:
        return np.zeros_like(counts)
    frequency = np.maximum(np.round(counts * (PROB_SCALE / total)).astype(np.int64), (counts > 0).astype(np.int64))
    frequency[int(np.argmax(frequency))] += PROB_SCALE - int(frequency.sum())  # the largest absorbs rounding
    return frequency


def _varint(value: int) -> bytes:
    return bytes([value]) if value < 0x80 else bytes([value & 0x7F | 0x80, value >> 7])


def pack_model(frequency: np.ndarray) -> bytes:
    """Every context's token_count, then its frequencies (1- or 2-byte varints)."""
    out = bytearray()
    for row in frequency:
        used = int(np.flatnonzero(row)[-1]) + 1 if row.any() else 0
        out.append(used)
        for value in row[:used]:
            out += _varint(int(value))
    return bytes(out)


def encode_near(indices: np.ndarray, palette: Palette, stretches: bool = False) -> bytes:
    """The payload of a near_rans strip (near_flat's with `stretches`) of (rows, width)
    indices < len(codebook) <= MAX_K."""
    flat = np.ascontiguousarray(indices, dtype=index_dtype(len(palette.codebook)))
    room = 2 * flat.size if stretches else flat.size  # symbols: at most two a pixel
    tokens = np.empty(room, dtype=np.uint8)
    extras = np.empty(room, dtype=np.uint16)  # up to 10 bits (symbols to 4,095)
    contexts = np.empty(room, dtype=np.uint8)
    used = _symbols(flat, *palette.tables, tokens, extras, contexts, stretches)
    tokens, extras, contexts = tokens[:used], extras[:used], contexts[:used]
    models = NEAR_FLAT_TABLES if stretches else CONTEXTS
    counts = np.bincount(contexts.astype(np.intp) * TOKENS + tokens, minlength=models * TOKENS).reshape(models, TOKENS)
    frequency = np.array([normalized(row) for row in counts])
    start = np.zeros_like(frequency)
    np.cumsum(frequency[:, :-1], axis=1, out=start[:, 1:])
    words = np.empty(2 * used + 2, dtype=np.uint16)  # at most two a symbol (token, extra bits)
    state, written = _rans_encode(tokens, extras, contexts, frequency, start, words)
    stream = words[:written][::-1].astype(">u2").tobytes()
    return pack_model(frequency) + int(state).to_bytes(4, "big") + stream


def estimated_size(indices: np.ndarray, codebook: np.ndarray, step: int) -> int:
    """About the bytes encode_near makes of these indices, from one row in `step` (each with
    the row above as its context), drawn in proportion to how much the row changes
    (sampled_rows): their entropy in their contexts, each row weighted by the rows it stands
    for, at least the cost of the likeliest frequency (PROB_SCALE - 1) a pixel, plus about two
    bytes of model per token used in a context. Entries are ranked in index order, as above
    COLOUR_ORDER_K: on drawings the estimate moved by 3 % at most, for none of the colour
    orders' cost (5 ms at 750 entries)."""
    indices = np.ascontiguousarray(indices, dtype=index_dtype(len(codebook)))
    rows, weights = sampled_rows(indices, step)
    width = indices.shape[1]
    tokens = np.empty(rows.size * width, dtype=np.uint8)
    contexts = np.empty(rows.size * width, dtype=np.uint8)
    # index order: no k x k tables to make
    _symbols(indices, _padded(codebook), None, None, None, tokens, np.empty(tokens.size, dtype=np.uint16), contexts, False, rows)
    counts = np.bincount(contexts.astype(np.intp) * TOKENS + tokens, np.repeat(weights, width), CONTEXTS * TOKENS).reshape(CONTEXTS, TOKENS)
    return round((_entropy_bits(counts) + indices.size * _LEAST_BITS) / 8) + 2 * int((counts > 0).sum())


def _entropy_bits(counts: np.ndarray) -> float:
    """The bits of tokens counted (CONTEXTS, TOKENS) at their contexts' own frequencies, and of their extra bits."""
    totals = np.broadcast_to(counts.sum(axis=1, keepdims=True), counts.shape)
    used = counts > 0
    return float(np.sum(counts[used] * np.log2(totals[used] / counts[used]))) + float(counts.sum(axis=0) @ _EXTRA_BITS)


@njit(cache=True, nogil=True)
def _count_changes(indices: np.ndarray, changes: np.ndarray) -> None:
    """Adds to each row's entry of `changes` its pixels unlike their left or above neighbour."""
    height, width = indices.shape
    for y in range(height):
        row, above = indices[y], indices[y - 1 if y else 0]
        count = 0
        for x in range(1, width):  # branchless: the first pixel of a row counts as unchanged
            count += (row[x] != row[x - 1]) | (row[x] != above[x])
        changes[y] += count


def sampled_rows(indices: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """About one row in `step` (every row of an image under 2 * step rows), ascending, and the
    rows each stands for: drawn in proportion to the row's pixels unlike their left or above
    neighbour, plus one, so that the few rows that carry a drawing's information (the edges of
    blocks, the lines of a chart) are sampled, not the runs between them."""
    height = indices.shape[0]
    if height < 2 * step:
        return np.arange(height), np.ones(height)
    changes = np.ones(height)
    _count_changes(indices, changes)
    total, picks = np.cumsum(changes), -(-height // step)
    share = total[-1] / picks
    # one draw at random in each share (a fixed seed: the same file every time), not its middle,
    # which blocks whose weight is the share's would meet at the same place every time
    at = (np.arange(picks) + np.random.default_rng(0).random(picks)) * share
    rows, times = np.unique(np.searchsorted(total, at), return_counts=True)
    return rows, times * share / changes[rows]


_EXTRA_BITS = np.array([_extra_bits.py_func(token) for token in range(TOKENS)], dtype=np.float64)
_LEAST_BITS = float(np.log2(PROB_SCALE / (PROB_SCALE - 1)))


# --- indices chosen for their cost (rate-optimized indices, rate.py) ---------------------------

# Besides the neighbours' entries, a pixel whose nearest entry is none of them may take one of
# the first ORDER_CHOICES entries of the colour order (the smallest symbols past them): 16 made
# psnr= near files 1.1 % smaller at equal PSNR on 3 Kodak photos (4: 0.7 % on 4), 0.6 % on 4
# package photos; 8 gave the BD-rate 16 gave on 8 Kodak photos (-47.02 %, -47.03 %) in 17 %
# less time for their psnr= near saves. (With 16 entries a whole pass of choices took 1.1x
# (k = 16) to 2.5x (k = 256) as long as with none, with 4 entries 1.1x to 1.6x.) A bound by the
# triangle inequality on how far down the order a winner can lie almost never stopped the loop
# early, and made it slower.
ORDER_CHOICES = 8


def token_costs(pieces: list[np.ndarray], palette: Palette) -> np.ndarray:
    """(CONTEXTS, TOKENS) bits a token costs in its context, as the tokens of these pieces of
    (rows, width) indices, each coded as a strip, are spread: what strips coded from them
    pay, near enough to choose by (a token never seen costs as if seen half a time; tokens past
    token_limit(k), which never occur, are not counted)."""
    k = len(palette.codebook)
    limit = token_limit(k)
    counts = np.zeros((CONTEXTS, TOKENS))
    counts[:, :limit] = 0.5
    for piece in pieces:
        flat = np.ascontiguousarray(piece, dtype=index_dtype(k))
        tokens, contexts = np.empty(flat.size, dtype=np.uint8), np.empty(flat.size, dtype=np.uint8)
        _symbols(flat, *palette.tables, tokens, np.empty(flat.size, dtype=np.uint16), contexts, False)
        counts += np.bincount(contexts.astype(np.intp) * TOKENS + tokens, minlength=CONTEXTS * TOKENS).reshape(CONTEXTS, TOKENS)
    costs = np.full((CONTEXTS, TOKENS), float(TOKENS))  # finite, for tokens that never occur
    costs[:, :limit] = np.log2(counts.sum(axis=1, keepdims=True)) - np.log2(counts[:, :limit])
    return costs


def prices(costs: np.ndarray, weight: float, k: int) -> np.ndarray:
    """(CONTEXTS, k) weight x the bits each symbol (0 to k - 1, all a pixel can have) costs in
    each context: its token's cost (costs: token_costs) plus its extra bits. Made once for a
    pass of choices, so that the kernel looks a choice's price up."""
    tokens, bits = _symbol_tokens(k)
    return weight * (costs[:, tokens] + bits)


@functools.cache
def _symbol_tokens(k: int) -> tuple[np.ndarray, np.ndarray]:
    """The token and extra bits of each symbol 0 to k - 1 (as _token gives them)."""
    pairs = [_token(symbol) for symbol in range(k)]
    tokens, bits = np.array([token for token, _ in pairs]), np.array([bits for _, bits in pairs])
    tokens.setflags(write=False)  # shared by every caller
    bits.setflags(write=False)
    return tokens, bits


def choose(pixels: np.ndarray, visible: np.ndarray, nearest: np.ndarray, palette: Palette, price: np.ndarray, out: np.ndarray, kept: int = 0, tally: tuple[np.ndarray, np.ndarray] | None = None) -> int:
    """Each pixel's index as the cheapest of its nearest entry, its neighbours' entries and
    (when its nearest entry is none of those) the first ORDER_CHOICES others of the colour
    order that code in fewer bits: the added squared error (from the visible colours,
    (k, C)) plus its symbol's price in its context (price: prices(costs, weight, k)). Pixels
    (rows, width, C) int32 are coded as one strip, nearest (rows, width) their nearest entries;
    out gets the choices. The first `kept` rows keep their nearest entries (rows above, there
    only as neighbours). With alpha, only entries of the nearest entry's alpha are taken.
    `tally`: (counts (k,), sums (k, 4)) int64, to which each chosen entry's pixel count and
    channel sums (pixels as given, padded with zeros) are added. Returns the added squared error."""
    k, channels = visible.shape
    if price.shape != (CONTEXTS, k) or pixels.shape[2] != channels:
        raise ValueError("prices and pixels must match the codebook")
    alpha = visible[:, -1].astype(np.int32) if channels in (2, 4) else np.zeros(0, dtype=np.int32)
    padded = np.zeros((k, 4), dtype=np.int32)  # zeros add nothing to a squared distance
    padded[:, :channels] = visible
    counts, sums = tally if tally is not None else (np.zeros(0, dtype=np.int64), np.zeros((0, 4), dtype=np.int64))
    if counts.size and (counts.shape != (k,) or sums.shape != (k, 4)):
        raise ValueError("a tally needs counts (k,) and sums (k, 4)")
    return int(_choose(pixels, padded, alpha, nearest, *palette.tables, price, out, kept, ORDER_CHOICES, counts, sums))


@njit(cache=True, nogil=True, inline="always")
def _squared(p0: int, p1: int, p2: int, p3: int, visible: np.ndarray, entry: int) -> int:
    d0, d1, d2, d3 = p0 - visible[entry, 0], p1 - visible[entry, 1], p2 - visible[entry, 2], p3 - visible[entry, 3]
    return d0 * d0 + d1 * d1 + d2 * d2 + d3 * d3


@njit(cache=True, nogil=True)
def _choose(pixels, visible, alpha, nearest, colours, levels, order, position, price, out, kept, order_choices, counts, sums):  # noqa: ANN001, ANN202 - typed by choose
    height, width = nearest.shape
    k = colours.shape[0]
    channels = pixels.shape[2]
    rows = np.zeros((2, width), dtype=nearest.dtype)
    found = np.zeros(4, dtype=np.int64)
    added = 0
    for y in range(height):
        for x in range(width):
            own = int(nearest[y, x])
            if y < kept:
                out[y, x] = own
                rows[y & 1, x] = own
                continue
            left, above, above_left, above_right = _neighbours(rows, y, x, width)
            context = _context(colours, levels, left, above, above_left, above_right)
            count = _candidates(left, above, above_left, above_right, found)
            symbol = -1  # as in _symbols
            for j in range(count):
                if found[j] == own:
                    symbol = j
                    break
            anchor = -1
            if symbol < 0:
                anchor = _anchor(colours, left, above, above_left, above_right)
                rank = _rank(position, k, anchor, own)
                skipped = 0
                for j in range(count):
                    skipped += _rank(position, k, anchor, int(found[j])) < rank
                symbol = count + rank - skipped
            # the pixel's channels held in registers, padded as visible is
            p0 = pixels[y, x, 0]
            p1 = pixels[y, x, 1] if channels > 1 else 0
            p2 = pixels[y, x, 2] if channels > 2 else 0
            p3 = pixels[y, x, 3] if channels > 3 else 0
            own_error = _squared(p0, p1, p2, p3, visible, own)
            best, best_cost, best_added = own, price[context, symbol], 0
            if anchor >= 0:  # the colour order's first entries: symbols count, count + 1, ...
                taken, at = 0, 0
                while taken < order_choices and taken < symbol - count:
                    entry = _entry(order, k, anchor, at)
                    at += 1
                    candidate = False
                    for j in range(count):
                        candidate |= found[j] == entry
                    if candidate:
                        continue
                    choice = count + taken
                    taken += 1
                    if alpha.size and alpha[entry] != alpha[own]:
                        continue
                    extra = _squared(p0, p1, p2, p3, visible, entry) - own_error
                    cost = extra + price[context, choice]
                    if cost < best_cost:
                        best, best_cost, best_added = entry, cost, extra
            for j in range(count):  # symbol j: a direct token
                entry = int(found[j])
                if entry == own or (alpha.size and alpha[entry] != alpha[own]):
                    continue
                extra = _squared(p0, p1, p2, p3, visible, entry) - own_error
                cost = extra + price[context, j]
                if cost < best_cost:
                    best, best_cost, best_added = entry, cost, extra
            out[y, x] = best
            rows[y & 1, x] = best
            added += best_added
            if counts.size:
                counts[best] += 1
                sums[best, 0] += p0
                sums[best, 1] += p1
                sums[best, 2] += p2
                sums[best, 3] += p3
    return added


# --- decoding ------------------------------------------------------------------------------


# what _read_model reports: (status, context, detail)
_MODEL_OK, _MODEL_CUT, _MODEL_TOKENS, _MODEL_VARINT, _MODEL_SUM = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True)
def _read_model(data: np.ndarray, frequency: np.ndarray, limit: int) -> tuple[int, int, int]:
    """The model's frequencies into frequency (zeros, a row a context): (status, context, bytes
    used or the broken context's token count or sum). A stretch's context may use every
    token. Compiled: a Python loop over its bytes took as long as decoding a third of a small
    strip, with the GIL held."""
    at = 0
    for context in range(frequency.shape[0]):
        if at >= data.size:
            return _MODEL_CUT, context, 0
        used = int(data[at])
        at += 1
        if used > tokens_allowed(context, limit):
            return _MODEL_TOKENS, context, used
        total = 0
        for token in range(used):
            if at >= data.size:
                return _MODEL_CUT, context, 0
            value = int(data[at]) & 0x7F
            if data[at] & 0x80:
                if at + 1 >= data.size:
                    return _MODEL_CUT, context, 0
                if data[at + 1] & 0x80:
                    return _MODEL_VARINT, context, 0
                value |= int(data[at + 1]) << 7
                at += 1
            at += 1
            frequency[context, token] = value
            total += value
        if used and total != PROB_SCALE:
            return _MODEL_SUM, context, total
    return _MODEL_OK, 0, at


@njit(cache=True, nogil=True)
def _fill_slots(frequency: np.ndarray, slots: np.ndarray) -> None:
    """slots[context, s] = the token whose frequency interval holds s (zeros where unused)."""
    for context in range(frequency.shape[0]):
        at = 0
        for token in range(TOKENS):
            slots[context, at : at + frequency[context, token]] = token
            at += frequency[context, token]


def parse_model(data: np.ndarray, what: str, k: int, stretches: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(frequency, start, slot -> token table, bytes used) of the model a payload (uint8)
    starts with, for a codebook of k entries (near_flat's, with its two more contexts, given
    `stretches`). A context with no tokens is unused; any other must sum to PROB_SCALE."""
    if not 1 <= k <= MAX_K:  # token_limit(k) <= TOKENS: _read_model writes no further
        raise KmqError(f"{what}: near coding needs k <= {MAX_K}, not {k}")
    frequency = np.zeros((NEAR_FLAT_TABLES if stretches else CONTEXTS, TOKENS), dtype=np.int64)
    limit = token_limit(k)
    status, context, detail = _read_model(data, frequency, limit)
    if status == _MODEL_CUT:
        raise KmqError(f"{what}: model cut short")
    if status == _MODEL_TOKENS:
        raise KmqError(f"{what}: context {context} has {detail} tokens, at most {tokens_allowed(context, limit)} for k = {k}")
    if status == _MODEL_VARINT:
        raise KmqError(f"{what}: a frequency of context {context} takes more than 2 bytes")
    if status == _MODEL_SUM:
        raise KmqError(f"{what}: frequencies of context {context} sum to {detail}, not {PROB_SCALE}")
    start = np.zeros_like(frequency)
    np.cumsum(frequency[:, :-1], axis=1, out=start[:, 1:])
    slots = np.zeros((len(frequency), PROB_SCALE), dtype=np.uint8)
    _fill_slots(frequency, slots)
    return frequency, start, slots, detail


@njit(cache=True, nogil=True, inline="always")
def _read_symbol(words: np.ndarray, cursor: int, state: int, frequency: np.ndarray, start: np.ndarray, slots: np.ndarray, context: int) -> tuple[int, int, int, int]:
    """(symbol, cursor, state, status): the next token in `context` and its extra bits."""
    slot = state & (PROB_SCALE - 1)
    token = int(slots[context, slot])
    f = int(frequency[context, token])
    if f == 0:  # only an unused context's slots lead to a token of frequency 0
        return 0, cursor, state, _NO_CONTEXT
    state = f * (state >> PROB_BITS) + slot - int(start[context, token])
    if state < STATE_LOW:
        if cursor >= words.size:
            return 0, cursor, state, _NO_WORDS
        state = (state << 16) | int(words[cursor])
        cursor += 1
    if token < DIRECT_SYMBOLS:
        return token, cursor, state, _OK
    bits = _extra_bits(token)
    symbol = (1 << (bits + 1)) | (((token - DIRECT_SYMBOLS) & 1) << bits) | (state & ((1 << bits) - 1))
    state >>= bits
    if state < STATE_LOW:
        if cursor >= words.size:
            return 0, cursor, state, _NO_WORDS
        state = (state << 16) | int(words[cursor])
        cursor += 1
    return symbol, cursor, state, _OK


@njit(cache=True, nogil=True)
def _decode(
    words: np.ndarray, cursor: int, state: int, frequency: np.ndarray, start: np.ndarray, slots: np.ndarray,
    colours: np.ndarray, levels: np.ndarray | None, order: np.ndarray | None, position: np.ndarray | None, k: int,
    rows: np.ndarray, y: int, x: int, count: int, out: np.ndarray, stretches: bool, carry: np.ndarray, memo: np.ndarray,
) -> tuple[int, int, int, int]:
    """`count` pixels from (y, x) of the strip into out (and rows, the last two rows):
    returns (cursor, state, status, pixels done). Along a row the neighbours slide one
    column (the values _neighbours gives): each pixel reads only its above-right. With
    `stretches` (near_flat), carry holds what a stretch owed when the last call ended: its
    pixels still to come (the value of the pixel before them: a call that ends inside a
    stretch ends inside its row, past its first pixel) and 1 if a pixel stops it; memo is
    _stretch's. On an error they are left as changed, and the strip must not be decoded on."""
    width = rows.shape[1]
    found = np.zeros(4, dtype=np.int64)
    ranks = np.zeros(4, dtype=np.int64)
    flat = int(frequency[FLAT_CONTEXT, 0])  # token 0's interval in the flat context starts at 0
    pending, interrupt = int(carry[0]), int(carry[1])
    seen_row, seen_value, seen_end = int(memo[0]), int(memo[1]), int(memo[2])  # _stretch's last end
    done = min(pending, count)  # a stretch never passes its row's end, nor x its start
    if done:
        _fill(rows[y & 1], out, x, x + done, 0, int(rows[y & 1, x - 1]))
        x, pending = x + done, pending - done
        if x == width:
            x, y = 0, y + 1
    carry[0] = pending
    while done < count:
        now = y & 1
        end = min(width, x + count - done)
        left, above, above_left, above_right = _neighbours(rows, y, x, width)
        column = x
        while column < end:
            if y == 0:
                above = above_left = above_right = left
            else:
                above_right = int(rows[1 - now, column + 1]) if column + 1 < width else above
            if (left == above) & (above_left == left) & (above_right == left) & (interrupt == 0):
                length = 0
                if stretches and y > 0:
                    length, seen_end = _stretch(rows[1 - now], column, width, left, seen_end if (seen_row == y) & (seen_value == left) else -1)
                    seen_row, seen_value = y, left
                if length >= MIN_STRETCH:
                    # A flat stretch: one symbol, whether and where it stops short.
                    symbol, cursor, state, status = _read_symbol(words, cursor, state, frequency, start, slots, STRETCH_CONTEXT)
                    if status != _OK:
                        return cursor, state, status, done
                    if symbol > length:
                        return cursor, state, _LONG_STRETCH, done
                    same = _stopped_at(length, symbol)
                    run, interrupt = min(same, end - column), int(symbol > 0)
                    _fill(rows[now], out, column, column + run, done, left)
                    carry[0] = same - run  # owed past this call's end
                    column, done = column + run, done + run
                    if column < width:
                        left, above, above_left, above_right = _neighbours(rows, y, column, width)
                    continue
                if (state & (PROB_SCALE - 1)) < flat:
                    # All four neighbours one entry, and token 0 (that entry): what the steps
                    # below give, without their look-ups; and so on along the row while the
                    # above-right neighbour is that entry too, the run stored at its end.
                    first = column
                    while True:
                        state = flat * (state >> PROB_BITS) + (state & (PROB_SCALE - 1))
                        if state < STATE_LOW:
                            if cursor >= words.size:
                                _fill(rows[now], out, first, column, done, left)
                                return cursor, state, _NO_WORDS, done + column - first
                            state = (state << 16) | int(words[cursor])
                            cursor += 1
                        column += 1
                        if column >= end or (state & (PROB_SCALE - 1)) >= flat:
                            break
                        if y > 0 and column + 1 < width and int(rows[1 - now, column + 1]) != left:
                            break
                    _fill(rows[now], out, first, column, done, left)
                    done += column - first
                    continue
            # the pixel that stops a stretch (its four neighbours are the stretch's value, which it
            # is not) is never symbol 0, and never starts a stretch
            context = INTERRUPT_CONTEXT if interrupt else _context(colours, levels, left, above, above_left, above_right)
            # coder steps 2-4 written out, not _read_symbol: as a call the per-pixel path took
            # 1.2-1.4 x the time (Kodak photos at 16 and 256 colours)
            slot = state & (PROB_SCALE - 1)
            token = int(slots[context, slot])
            f = int(frequency[context, token])
            if f == 0:  # only an unused context's slots lead to a token of frequency 0
                return cursor, state, _NO_CONTEXT, done
            state = f * (state >> PROB_BITS) + slot - int(start[context, token])
            if state < STATE_LOW:
                if cursor >= words.size:
                    return cursor, state, _NO_WORDS, done
                state = (state << 16) | int(words[cursor])
                cursor += 1
            if (token == 0) & (interrupt == 0):
                value = left
            else:
                symbol = token
                if token >= DIRECT_SYMBOLS:
                    bits = _extra_bits(token)
                    symbol = (1 << (bits + 1)) | (((token - DIRECT_SYMBOLS) & 1) << bits) | (state & ((1 << bits) - 1))
                    state >>= bits
                    if state < STATE_LOW:
                        if cursor >= words.size:
                            return cursor, state, _NO_WORDS, done
                        state = (state << 16) | int(words[cursor])
                        cursor += 1
                symbol += interrupt
                interrupt = 0
                count_found = _candidates(left, above, above_left, above_right, found)
                if symbol < count_found:
                    value = int(found[symbol])
                else:
                    anchor = _anchor(colours, left, above, above_left, above_right)
                    for j in range(4):
                        ranks[j] = _rank(position, k, anchor, int(found[j])) if j < count_found else MAX_K
                    # rank counts the entries that are not candidates: the smallest r with
                    # r - (candidates ranked at or before r) = symbol - count_found.
                    wanted = symbol - count_found
                    rank = wanted
                    while True:
                        moved = wanted + (ranks[0] <= rank) + (ranks[1] <= rank) + (ranks[2] <= rank) + (ranks[3] <= rank)
                        if moved == rank:
                            break
                        rank = moved
                    if rank >= k:
                        return cursor, state, _BAD_RANK, done
                    value = _entry(order, k, anchor, rank)
            rows[now, column] = value
            out[done] = value
            done += 1
            column += 1
            left, above_left, above = value, above, above_right
        x = end
        if x == width:
            x, y = 0, y + 1
    carry[1] = interrupt
    memo[0], memo[1], memo[2] = seen_row, seen_value, seen_end
    return cursor, state, _OK, count


@njit(cache=True, nogil=True, inline="always")
def _fill(row: np.ndarray, out: np.ndarray, first: int, end: int, done: int, value: int) -> None:
    """A run of `value` from column `first` to `end` of the row, and into out from `done`."""
    row[first:end] = value
    out[done : done + end - first] = value


class NearStrip:
    """Decodes one near_rans strip (near_flat's, with `stretches`) whose payload is all in hand, piece by piece."""

    def __init__(self, payload: bytes | memoryview, palette: Palette, width: int, k: int, what: str, stretches: bool = False) -> None:
        if k > MAX_K:
            raise KmqError(f"{what}: near coding needs k <= {MAX_K}, not {k}")
        self.what = what
        data = np.frombuffer(payload, dtype=np.uint8)
        self._frequency, self._start, self._slots, used = parse_model(data, what, k, stretches)
        self._stretches = stretches
        self._carry = np.zeros(2, dtype=np.int64)  # a stretch cut by a piece's end (_decode)
        self._memo = np.full(3, -1, dtype=np.int64)  # _stretch's, kept from piece to piece
        rest = len(data) - used
        if rest < 4 or rest % 2:
            raise KmqError(f"{what}: the coded stream of {rest} bytes is not a 4-byte state and 2-byte words")
        self._state = int.from_bytes(data[used : used + 4].tobytes(), "big")
        if self._state < STATE_LOW:
            raise KmqError(f"{what}: initial state {self._state} is below {STATE_LOW}")
        self._words = data[used + 4 :].view(">u2").astype(np.uint16)
        self._cursor = 0
        self._palette, self._k = palette, k
        self._rows = np.zeros((2, width), dtype=index_dtype(k))
        self._y = self._x = 0

    def decode(self, out: np.ndarray) -> None:
        """The next out.size indices, into out (index_dtype(k))."""
        cursor, state, status, done = _decode(
            self._words, self._cursor, self._state, self._frequency, self._start, self._slots, *self._palette.tables, self._k, self._rows, self._y, self._x, out.size, out, self._stretches, self._carry, self._memo,
        )
        if status != _OK:
            width = self._rows.shape[1]
            row, column = divmod(self._y * width + self._x + done, width)
            problem = {
                _NO_CONTEXT: "falls in a context the model has no frequencies for",
                _BAD_RANK: "has a rank past the codebook",
                _NO_WORDS: "needs more words than the stream holds",
                _LONG_STRETCH: "starts a flat stretch whose symbol is past its length",
            }[status]
            raise KmqError(f"{self.what}: the pixel at row {row}, column {column} of the strip {problem}")
        self._cursor, self._state = cursor, state
        self._y, self._x = divmod(self._y * self._rows.shape[1] + self._x + out.size, self._rows.shape[1])

    def finish(self) -> None:
        """After the last pixel: every word read, and the state back where the encoder began."""
        if self._cursor != self._words.size:
            raise KmqError(f"{self.what}: {self._words.size - self._cursor} words follow the last pixel's")
        if self._state != STATE_LOW:
            raise KmqError(f"{self.what}: the coder ends in state {self._state}, not {STATE_LOW}")
