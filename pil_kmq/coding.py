"""Strip coding of the index stream (index_coding 1, spec section 7.2). Knows nothing of Pillow.

The image is cut into strips of rows, each coded on its own so strips can be coded and
decoded in parallel (zlib and zstd release the GIL), streamed in bounded memory, and a
corrupt one located. A coded strip splits the indices into run flags (is this index the
same as the previous one?) and the literals (the indices that are not): flags compress to
almost nothing and the literals, free of repeats, compress better than the raw stream. A
drawing's strip may instead be stored as whole rows, each starting on a byte: a row that
repeats one above is then a repeated byte string, which zstd finds.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import zstandard

from .bitpack import pack_indices, pack_rows
from .decoding import JOB_PIXELS, NEAR_JOB_WEIGHT, max_strip_length
from .format import (
    MED_MAX_WIDTH,
    NEAR_METHODS,
    KmqError,
    StripMethod,
    bits_for_k,
    crc32,
    field_width,
    packing_width,
    raw_stream_length,
    strip_minor,
)
from .jobs import WORKERS, kept_by_thread, run_jobs, side_by_side
from .near import MAX_K, NEAR_MAX_PIXELS, Palette, encode_near, estimated_size, flat_share
from .predict import residuals

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_ENTRY = struct.Struct(">QI")
STRIP_HEAD_SIZE = 4  # strip_height
STRIP_ENTRY_SIZE = 12  # strip_length u64, strip_crc u32
# Pixels per strip a writer aims at: large enough to compress well, small enough to stream.
STRIP_PIXELS = 1 << 18
# ... in a drawing: text and controls repeat far apart (a 700 x 500 text page coded as two
# strips took 43 % more bytes than as one), and its strips decode fast anyway.
DRAWING_STRIP_PIXELS = 1 << 22
ZLIB_LEVEL = 9
ZSTD_LEVEL = 15  # 17 and 19 save < 0.5 % more on run flags and 8-bit literals, for 1.3x and 2x the time
# 16-bit literals (k > 256) at this level: a photo's are near or above 256 KB a strip, where level
# 15 takes zstd's lazy parser and 17 its optimal one, which weighs the matches between two-byte
# symbols. Flags + literals of Kodak photos at k = 512, 2,048 and psnr=42 came out 4.5 % smaller
# for 1.70 x the literals' time (level 19: 5.7 %, 2.8 x); whole files of held-out photos 1.9 %,
# their saves 1.05 x (wide_literals.py).
WIDE_LITERALS_LEVEL = 17
# Rows stored whole (ROWS_ZSTD) repeat from row to row in drawings, far apart; see _rows_parameters.
ROWS_SEARCH_LOG = 5
ROWS_MIN_MATCH = 3
# zstd's optimal parser weighs matches of up to this many bytes one by one: a drawing's rows
# repeat for thousands, and at 256 it took them at once where a slightly shorter one and what
# follows cost less (rows_level.py: 2.6 % smaller rows at 999 and search 5, 1.4 x the time)
ROWS_TARGET_LENGTH = 999
# Hash and chain tables of at most 2**22 entries each, the most that stays below level 17's
# memory: spanning the largest rows strip (8 MiB) they took 122 MiB a worker (level 17 41 MiB),
# capped 26 MiB, for 0.04 % more bytes on a 2048 x 2048 drawing.
ROWS_TABLES_LOG = 22
NEAR_PHOTO_BYTES = 8192  # see _near_codes_smaller
# A first strip with at most one literal in NEAR_DRAWING_FRACTION pixels is plainly drawn
# (drawings made for tuning that near_rans codes in less than zstd's trial: one in 12 to 67;
# Kodak photos that look drawn at k = 16: one in 6.2 to 9.7). It gets a photo's strips only
# where near_rans codes it in less than NEAR_PHOTO_MARGIN x the smaller of zstd's quick
# trials: over a drawing's one large strip zstd finds repeats across what would be the photo
# strips' bounds (line plots at 256 colours: near_rans 0.92 x the trial on the first strip,
# yet 5 % larger over four strips than zstd's runs over one; at 2,886 colours 0.88 x and
# 0.6 % larger). A photo keeps its strips up to 1 x: in one strip, under one model, Kodak
# photos at 0.81 to 0.87 x came out 0.8 to 2 % larger, and decoded on one thread.
NEAR_DRAWING_FRACTION = 10
NEAR_PHOTO_MARGIN = 0.8
# A photo of more than NEAR_SPLIT_PIXELS pixels coded near_rans gets an even number of strips,
# at least two, so that both decoding workers share it: its halves, each more than half a job,
# go to different jobs. On central crops of 8 Kodak photos at K = 16, 64, 256, two strips for
# one took 25-30 % off loads at 512 x 512 and 384 x 384 for 0.1 % and 0.3-0.7 % more bytes; at
# 256 x 256 (not split) they cost 1.2-1.9 % more bytes and saved nothing.
NEAR_SPLIT_PIXELS = JOB_PIXELS // NEAR_JOB_WEIGHT
# ... but an image near coded unweighed (compression="auto"'s k= saves, psnr= searches) that
# near_rans is estimated to code in under NEAR_ONE_STRIP_BITS a pixel (the whole image, rows
# sampled one in NEAR_ONE_STRIP_STEP: a first strip's flat sky or black surround may stand
# for nothing below it) is cut as a drawing: its decoding is mostly flat stretches, which two
# workers do not speed up, and a second strip costs a model and cuts stretches ("one strip":
# up to NEAR_MAX_PIXELS). The Voronoi label map made for tuning (0.04 bits a pixel) came out
# 0.92-0.93 x the bytes in one strip, loading in 0.77-0.87 x the time, its save 1.08-1.10 x
# as long, one strip being coded on one thread (auto.py); Kodak photos "auto" near codes at 4
# and 16 colours (0.14-0.39 bits a pixel) would take 0.98-0.99 x the bytes but load in
# 1.13-1.39 x the time (measured once, not kept as a script).
NEAR_ONE_STRIP_BITS = 0.08
NEAR_ONE_STRIP_STEP = 64  # the margin is wide (0.04 against 0.14 bits a pixel): half the time of 16
# A strip of at most this many pixels (an icon, a small chart) is stored whichever way is the
# smallest: there the methods' framing (table entry, zstd frame headers) is a large part of it.
SMALL_STRIP_PIXELS = 1 << 14
PROBE_LEVEL = 3  # rows or runs is decided at this level: compressing both fully cost 1.5x the save
# A near_rans strip at most NEAR_SURE (runs, rows) of the quick trial's bytes for zstd's choice
# is kept without compressing that choice at the real levels, which made runs at least 0.73 x
# and rows 0.53 x the trial's bytes (tuning drawings, and Kodak photos whose rate-optimized
# indices leave few literals: 0.82 x for them, where near_rans was 0.50 to 0.85 x the trial).
NEAR_SURE = (0.7, 0.5)
# ... and a strip of many literals (a photo's, or antialiased above 256 colours; rows are tried
# there only in an image cut as a drawing) at most NEAR_SURE_PHOTO of the trial's runs. Not a
# bound: the real level made runs 0.83 to 0.96 x the trial on Kodak's strips (a sprite sheet,
# whose sprites repeat, 0.84 x), so a strip kept between 0.83 and 0.9 x may lose to them by up
# to 8 %. Measured, none did: near_rans was 0.55 to 0.99 x the trial there (2.6 to 3.0 x on
# the sprite sheet), and at 0.8 the files were byte for byte those of 0.9 for 1.3 to 2.2 x the
# coding time.
NEAR_SURE_PHOTO = 0.9
# A floor under what zstd's real levels make of a strip, as a share of the quick trial's bytes
# (runs, rows): compression="auto" near codes a label map without coding its zstd strips where
# near coding comes out under that floor (codec.auto_coded). On the drawings made for tuning,
# the held-out graphics and Kodak photos that look drawn, at 4 to 256 colours and their exact
# counts (up to 2,934), the real levels made runs 0.65-0.93 x and rows 0.55-0.94 x trials of
# 2,048 bytes or more, and a 685-byte pixel art's 0.50 and 0.35 x; as grey images, MED residuals
# (compressed as rows are) 0.53-0.92 x (zstd_floor.py).
ZSTD_FLOOR = (0.5, 0.4)
# Rows are tried for a strip of at most 1 literal in ROWS_TRY_FRACTION pixels: drawings and
# label maps (at most 1 in 9 measured), never photos (at least 1 in 5.4 at k = 16); for a strip
# of more only in an image cut as a drawing (ROWS_REPEAT).
ROWS_TRY_FRACTION = 6
# A strip of many literals whose rows repeat (a sprite sheet's tiles, one literal in two pixels)
# is stored rows where the trial finds them under ROWS_REPEAT x runs (the sprite sheet: 0.60 to
# 0.84 x; Kodak photos' first strips: 0.99 to 1.34 x, where rows never won at the real levels),
# and is cut as a drawing, into one strip: its tiles repeat across a photo's strips' bounds.
# The sprite sheet's files came out 0.53-0.70 x, a tile set never tuned on 0.43-0.52 x; every
# photo pays for the trial of its first strip's rows, 1-5 % of its save (rows_runs.py).
ROWS_REPEAT = 0.9
# ... and where the trial codes the rows in under ROWS_REPEAT_PACKED x their packed bytes: noise
# (film grain, random pixels), which no run shortens, codes its rows smaller than its runs too,
# but at 0.72 to 1.0 x their packed bytes; the sprite sheet and the tile set at 0.04 to 0.19 x.
# Tested first, it spares the runs' trial of many photos (Kodak's at 0.44 to 0.81 x).
ROWS_REPEAT_PACKED = 0.5
# Above 256 colours a drawing's antialiased edges keep colours of their own and break its runs,
# so literals no longer tell it from a photo. There a first strip with at most one literal in
# SPLIT_TRY_FRACTION is coded in halves by the quick trial: a drawing, whose text and controls
# repeat far apart, loses SPLIT_COST or more that way (a UI screenshot at its exact colours:
# 31 %), a photo little (at most 6 % on Kodak and package photos at exact colours and K > 256).
SPLIT_TRY_FRACTION = 2
SPLIT_COST = 1.15
# Near coding (the smallest files) stores rows packed below a byte an index in whole bytes
# (BYTE_ROWS_ZSTD) where a sample of their bands codes under BYTE_ROWS_MARGIN x that way. The
# sample's two compressions cost a drawing's save 7-12 % where it keeps packed rows (near's
# saves, byte_rows.py; zstd's, 15-30 %, measured once), which is why zstd's strips, the
# default's, do not try it. On the drawings made for tuning a sample's ratio was 0.17 below to
# 0.12 above the whole strip's; at 0.9 none of their strips that whole bytes make larger was
# taken (the nearest, a bar chart at k = 16: 0.97 sampled, 1.02 whole), and text pages at 4-16
# colours came out 5-15 % smaller (at k = 2, sampled at 0.92-1.00, they keep packed rows that
# whole bytes would make 8-11 % smaller).
BYTE_ROWS_MARGIN = 0.9
BYTE_ROWS_BAND = 32
BYTE_ROWS_SAMPLE_EVERY = 4
# Where the codebook runs from dark to light (predictable: entries ascending, or descending, in
# every channel), a strip's indices are also tried as MED residuals (MED_ROWS_ZSTD, predict.py):
# stored where the quick trial codes them under MED_SURE x the way it took, and coded both ways,
# the smaller kept, up to MED_MARGIN x: the real level shortens residuals more than runs, by an
# amount the trial does not tell. On the Kodak set as grey (each of its 144 strips at K = 16, 64,
# 256), residuals under 1.0 x the runs' trial always came out smaller for real (0.72-0.93 x),
# from 1.0 to 1.25 x mostly (0.83-1.11 x: a flat sky, whose runs the real level shortens as
# much, lost), above that never (1.05-1.38 x). Under 1.0 x nothing checks: a synthetic diagonal
# ramp wrapping around 256 levels, whose runs the real level halves, came out 1.26 x at K = 256.
MED_SURE = 1.0
MED_MARGIN = 1.25
# ... for a drawing's strip, whose rows repeat (residuals coded with the rows' parameters). Its
# trial misjudges small strips: on drawings as grey images (med_drawn.py), residuals it put at
# 0.71-0.79 x rows or runs came out 0.42-1.66 x for real (a pixel art's 1.66 x had been stored
# unchecked, under 0.8 x), one it put at 0.41 x came out 0.45 x (a 5-region Voronoi map's
# straight edges). From 0.5 x both ways are coded and the smaller kept (strips only shrink): on 82
# strips of three sets that stored the smaller way but on five whose trial was 1.10 x or more
# (residuals 0.89-1.00 x).
MED_DRAWN = (0.5, 1.1)
PREDICTED_SEARCH_LOG = 1
PREDICTED_MIN_MATCH = 4
PREDICTED_TARGET_LENGTH = 64
PREDICTED_CHAIN_LOG = 10
PREDICTED_HASH_LOG = 17  # 2^11 entries found no repeat of a photo pasted twice, which the trial sees
__all__ = ["WORKERS", "Palette", "StripTable", "encode_strip", "encode_strips", "parse_table", "predictable", "strips_minor", "uncoded_is_no_longer"]


class StripTable(NamedTuple):
    """strip_height, then the byte length and CRC-32 of every strip, as the index stream starts."""

    strip_height: int
    lengths: Sequence[int] | np.ndarray  # numpy arrays once parsed
    crcs: Sequence[int] | np.ndarray

    @property
    def size(self) -> int:
        return STRIP_HEAD_SIZE + STRIP_ENTRY_SIZE * len(self.lengths)


def strip_height_for(width: int, height: int, strip_pixels: int | None = None) -> int:
    """Strips of at most about strip_pixels (default STRIP_PIXELS) pixels, all the same
    height, so that parallel workers get equal shares."""
    count = max(1, -(-width * height // (strip_pixels or STRIP_PIXELS)))
    return -(-height // min(count, height))


def looks_drawn(indices: np.ndarray) -> bool:
    """Few literals: a drawing, a label map, a screenshot - not a photo."""
    return _few_literals(_run_flags(indices))


def one_drawn_strip(indices: np.ndarray) -> bool:
    """Whether these indices are surely stored by RUNS_ZSTD as one strip cut as a drawing, coded
    as the quick trial says (so that runs_floor and rows_floor bound it): more than
    SMALL_STRIP_PIXELS (a smaller strip is coded every way) and at most DRAWING_STRIP_PIXELS
    pixels whose first strip has few literals (writer_strips). Drawings the writer cuts as one
    strip for their repeats (_drawn's other ways) are left out: False is always safe."""
    height, width = indices.shape
    if not SMALL_STRIP_PIXELS < indices.size <= DRAWING_STRIP_PIXELS:
        return False
    return _few_literals(_run_flags(indices[: strip_height_for(width, height)]))


def runs_floor(indices: np.ndarray, bits_per_index: int, trial: int | None = None) -> int:
    """A floor under a runs strip's bytes of these indices (ZSTD_FLOOR), or their bytes uncoded
    (`trial`: runs_trial's, if known)."""
    trial = runs_trial(indices, bits_per_index) if trial is None else trial
    return min(int(ZSTD_FLOOR[0] * trial), raw_stream_length(indices.size, 1, bits_per_index))


def rows_floor(indices: np.ndarray, bits_per_index: int, ordered: bool, trial: int | None = None) -> int:
    """A floor under a rows strip's bytes of these indices (ZSTD_FLOOR), or for an `ordered`
    codebook's, under MED_ROWS_ZSTD's too, whose residuals are compressed as rows are
    (`trial`: rows_trial's, if known)."""
    return int(ZSTD_FLOOR[1] * (rows_trial(indices, bits_per_index, ordered) if trial is None else trial))


def runs_trial(indices: np.ndarray, bits_per_index: int) -> int:
    """The quick trial's bytes for a runs strip of these indices."""
    return sum(_probe_size(stream) for stream in _runs_streams(indices, _run_flags(indices), bits_per_index))


def rows_trial(indices: np.ndarray, bits_per_index: int, ordered: bool) -> int:
    """The quick trial's bytes for a rows strip of these indices, or for an `ordered` codebook's
    MED residuals where fewer."""
    trial = _probe_size(_packed_rows(indices, bits_per_index))
    if ordered and _predicted_fits(indices, bits_per_index):
        trial = min(trial, _probe_size(residuals(indices).tobytes()))
    return trial


def _literals(flags: np.ndarray) -> int:
    return flags.size - int(np.count_nonzero(flags))


def _few_literals(flags: np.ndarray) -> bool:
    return _literals(flags) * ROWS_TRY_FRACTION <= flags.size


def writer_strips(first: np.ndarray, width: int, height: int, bits_per_index: int, method: StripMethod | None = None, palette: Palette | None = None, near_length: int | None = None) -> tuple[int, bool]:
    """The writer's strip height and whether the image is cut as a drawing (its strips of many
    literals then try rows too, see encode_strip), from the indices of its first strip of
    STRIP_PIXELS (so a streaming writer decides as an in-memory one does): a drawing (_drawn)
    gets strips of up to DRAWING_STRIP_PIXELS, since zstd finds a repeated row or glyph only
    within a strip. With NEAR_FLAT (and its `palette`) no strip is over NEAR_MAX_PIXELS
    (strip_height_for rounds rows up), so that every strip may be stored near coded; and what
    only looks drawn (a photo at a few colours, which near_rans codes smaller; see
    NEAR_PHOTO_MARGIN for what is plainly drawn) keeps a photo's strips, which both decoding
    workers share. `near_length`: the bytes of `first`'s near coded payload, if known."""
    flags = _run_flags(first)
    drawn = _drawn(first, flags, bits_per_index, method)
    if drawn and method == StripMethod.NEAR_FLAT and palette is not None:
        drawn = not _near_codes_smaller(first, flags, palette, near_length)
    return _strip_height(width, height, method, drawn), drawn


def _near_fits(k: int, pixels: int) -> bool:
    """Whether near coding (NEAR_RANS, NEAR_FLAT) may store a strip of this many pixels for k entries."""
    return k <= MAX_K and pixels <= NEAR_MAX_PIXELS


def _drawn(indices: np.ndarray, flags: np.ndarray, bits_per_index: int, method: StripMethod | None) -> bool:
    """A drawing: few literals, or (for a method that may store rows) rows that repeat, coded by
    the quick trial in under ROWS_REPEAT_PACKED x their packed bytes and ROWS_REPEAT x the runs,
    or above 256 colours, at most one literal in SPLIT_TRY_FRACTION, repeats far apart
    (antialiased edges leave many literals, yet zstd finds the shapes again)."""
    if _few_literals(flags):
        return True
    if indices.size <= SMALL_STRIP_PIXELS:
        return False
    tries_rows = method in (StripMethod.RUNS_ZSTD, StripMethod.NEAR_FLAT)
    far = bits_per_index > 8 and _literals(flags) * SPLIT_TRY_FRACTION <= flags.size
    rows = _packed_rows(indices, bits_per_index) if tries_rows else b""
    rows_trial = _probe_size(rows) if rows else 0
    # rows found again (tiles, sprites) or noise? The runs' trial only where that may tell.
    repeat = bool(rows) and rows_trial < ROWS_REPEAT_PACKED * len(rows)
    if not (repeat or far):
        return False
    runs_trial = _probe_runs(indices, flags, bits_per_index)
    return (repeat and rows_trial < ROWS_REPEAT * runs_trial) or (far and _repeats_far(indices, bits_per_index, runs_trial))


def _strip_height(width: int, height: int, method: StripMethod | None, drawn: bool) -> int:
    """A drawing's strip height or a photo's, for `method`."""
    strip_height = strip_height_for(width, height, DRAWING_STRIP_PIXELS if drawn else STRIP_PIXELS)
    if method != StripMethod.NEAR_FLAT:
        return strip_height
    if not drawn and width * height > NEAR_SPLIT_PIXELS:
        count = strip_count(height, strip_height)
        strip_height = -(-height // min(height, max(2, count + count % 2)))
    if width <= NEAR_MAX_PIXELS:
        strip_height = min(strip_height, NEAR_MAX_PIXELS // width)
    return strip_height


def _repeats_far(first: np.ndarray, bits_per_index: int, runs_trial: int) -> bool:
    """Whether the first strip's runs, split in two halves, cost SPLIT_COST or more of what
    they cost whole in the quick trial, `runs_trial`."""
    flat = first.ravel()  # halves of its pixels: a strip of one very wide row has two as well
    half = flat.size // 2
    split = sum(_probe_runs(part, _run_flags(part), bits_per_index) for part in (flat[:half], flat[half:]))
    return split >= SPLIT_COST * runs_trial


def _probe_runs(indices: np.ndarray, flags: np.ndarray, bits_per_index: int) -> int:
    """A runs strip's streams' bytes in the quick trial."""
    return sum(_probe_size(stream) for stream in _runs_streams(indices, flags, bits_per_index))


def _near_codes_smaller(first: np.ndarray, flags: np.ndarray, palette: Palette, near_length: int | None = None) -> bool:
    """Whether near_rans codes this first strip (`flags`: its run flags) in less than zstd's
    quick trials of runs and rows (NEAR_PHOTO_MARGIN x them, if plainly drawn), in at least
    NEAR_PHOTO_BYTES: below that a second strip's model would cost more than its decoding time
    saves (a label map)."""
    k = len(palette.codebook)
    if not _near_fits(k, first.size):
        return False
    near = len(_near_coded(first, palette)) - 1 if near_length is None else near_length  # as written: payload, no method byte
    if near < NEAR_PHOTO_BYTES:
        return False
    margin = NEAR_PHOTO_MARGIN if _literals(flags) * NEAR_DRAWING_FRACTION <= flags.size else 1.0
    bits = bits_for_k(k)
    return near < margin * _probe_runs(first, flags, bits) and near < margin * _probe_size(_packed_rows(first, bits))


def strip_count(height: int, strip_height: int) -> int:
    return -(-height // strip_height)


def table_size(height: int, strip_height: int) -> int:
    return STRIP_HEAD_SIZE + STRIP_ENTRY_SIZE * strip_count(height, strip_height)


def parse_strip_height(data: bytes, height: int, stream_length: int) -> int:
    """strip_height from the first 4 bytes of the index stream, checked against the image and
    against the stream's length, which must at least hold the table it implies."""
    (strip_height,) = _U32.unpack_from(data)
    if not 1 <= strip_height <= height:
        raise KmqError(f"KMQ strip_height must be 1 to height={height}, not {strip_height}")
    if table_size(height, strip_height) > stream_length:
        raise KmqError(f"KMQ strip table of {strip_count(height, strip_height)} strips does not fit index_stream_length {stream_length}")
    return strip_height


_TABLE_ENTRY = np.dtype([("length", ">u8"), ("crc", ">u4")])


def parse_table(data: bytes, height: int, width: int, bits_per_index: int, stream_length: int) -> StripTable:
    """The strip table. Every strip_length is at least 1 and at most what its pixels may take
    (max_strip_length), and together with the table they make the index stream's length."""
    strip_height = parse_strip_height(data, height, stream_length)
    count = strip_count(height, strip_height)
    entries = np.frombuffer(data, dtype=_TABLE_ENTRY, count=count, offset=STRIP_HEAD_SIZE)
    lengths, crcs = entries["length"].astype(np.uint64), entries["crc"].astype(np.uint32)
    total = check_lengths(lengths, 0, strip_height, height, width, bits_per_index)
    table = StripTable(strip_height, lengths, crcs)
    check_total(total, table.size, count, stream_length)
    return table


def check_lengths(lengths: np.ndarray, first: int, strip_height: int, height: int, width: int, bits_per_index: int) -> int:
    """Check the strip_lengths of strips first, first + 1, ...: each at least 1 and at most what
    its pixels may take. Returns their sum (added without overflow)."""
    if not lengths.size:
        return 0
    count = strip_count(height, strip_height)
    most = max_strip_length(strip_height * width, bits_per_index)
    last_most = most  # the image's last strip may have fewer rows
    if first + lengths.size == count:
        last_most = max_strip_length((height - (count - 1) * strip_height) * width, bits_per_index)
    if lengths.size <= _FEW_STRIPS:
        values = lengths.tolist()
        empty = values.index(0) if 0 in values else None
        over = next((number for number, length in enumerate(values) if length > most), None)
        total = sum(values)
    else:
        empty = None if lengths.all() else int(np.argmin(lengths))
        found = np.flatnonzero(lengths > np.uint64(most))
        over = int(found[0]) if found.size else None
        # Each length is below 2**64: add the high and low halves apart, so no sum can overflow.
        total = (int((lengths >> np.uint64(32)).sum()) << 32) + int((lengths & np.uint64(0xFFFFFFFF)).sum())
    if over is None and int(lengths[-1]) > last_most:
        over = lengths.size - 1
    if empty is not None:
        raise KmqError(f"KMQ strip {first + empty} is empty: every strip holds at least its strip_method byte")
    if over is not None:
        raise KmqError(f"KMQ strip {first + over}: strip_length {int(lengths[over])} is more than its pixels may take")
    return total


# Up to this many strip_lengths are checked as Python ints: a thumbnail's table has one or a
# few entries, and a dozen numpy calls on them took a tenth of its load.
_FEW_STRIPS = 32


def check_total(total: int, table_bytes: int, count: int, stream_length: int) -> None:
    if table_bytes + total != stream_length:
        raise KmqError(
            f"KMQ strip table: {count} strips of {total} bytes plus a {table_bytes}-byte table "
            f"do not make index_stream_length {stream_length}"
        )


TABLE_CHUNK = 1 << 16  # strip-table entries read at a time by a random-access reader


def iter_table(read_at: Callable[[int, int], bytes], stream_offset: int, header_fields: tuple[int, int, int, int], first: int, last: int, whole: bool) -> Iterator[tuple[int, int, int, int]]:
    """(number, offset in the index stream, strip_length, strip_crc) of strips first..last,
    reading the table in chunks through read_at(offset, size): memory stays bounded however
    many strips there are. Every entry read is checked; with whole, the whole table is read
    (after the last strip wanted) and its total checked against index_stream_length.
    header_fields: height, width, bits_per_index, index_stream_length."""
    height, width, bits_per_index, stream_length = header_fields
    strip_height = parse_strip_height(read_at(stream_offset, STRIP_HEAD_SIZE), height, stream_length)
    count = strip_count(height, strip_height)
    table_bytes = table_size(height, strip_height)
    scan_to = count if whole else min(count, last + 1)
    total = 0
    for start in range(0, scan_to, TABLE_CHUNK):
        number = min(TABLE_CHUNK, scan_to - start)
        lengths, crcs = read_entries(read_at(stream_offset + STRIP_HEAD_SIZE + STRIP_ENTRY_SIZE * start, STRIP_ENTRY_SIZE * number), number)
        sums = check_lengths(lengths, start, strip_height, height, width, bits_per_index)
        if start + number > first and start <= last:
            running = table_bytes + total  # where this chunk's first strip starts
            for index in range(min(last + 1 - start, number)):
                if start + index >= first:
                    yield start + index, running, int(lengths[index]), int(crcs[index])
                running += int(lengths[index])
        total += sums
    if whole:
        check_total(total, table_bytes, count, stream_length)


def read_entries(data: bytes, count: int) -> tuple[np.ndarray, np.ndarray]:
    """strip_length and strip_crc of `count` table entries."""
    entries = np.frombuffer(data, dtype=_TABLE_ENTRY, count=count)
    return entries["length"].astype(np.uint64), entries["crc"].astype(np.uint32)


def pack_table(table: StripTable) -> bytes:
    entries = b"".join(_ENTRY.pack(int(length), int(crc)) for length, crc in zip(table.lengths, table.crcs))
    return _U32.pack(table.strip_height) + entries


def check_strip_crc(computed: int, stored: int, number: int) -> None:
    """Each strip's own CRC-32 locates corruption to the strip."""
    if computed != stored:
        raise KmqError(f"KMQ strip {number}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the strip is corrupt")


# --- the run/literal transform -------------------------------------------------------------


def _run_flags(indices: np.ndarray) -> np.ndarray:
    """flag[i] = indices[i] == indices[i - 1] in raster order; flag[0] = False."""
    flat = indices.ravel()
    flags = np.zeros(flat.size, dtype=bool)
    np.equal(flat[1:], flat[:-1], out=flags[1:])
    return flags


# --- codecs -------------------------------------------------------------------------------


def _zlib_compress(data: bytes) -> bytes:
    return zlib.compress(data, ZLIB_LEVEL)


def _zstd_compress(data: bytes, level: int = ZSTD_LEVEL) -> bytes:
    compressor = _kept_compressor(level) if len(data) <= KEPT_COMPRESSOR_BYTES else _compressor(level)
    return compressor.compress(data)


def _compressor(level: int) -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=False)


# Each thread keeps a compressor a level for inputs up to this size: made afresh for every
# frame, a context took 2-3 x as long as compressing a thumbnail's frame, and ~1 ms more on a
# photo's strip. A kept context keeps the tables its largest input needed: 4.7 MB at this
# size and the strips' level (17.7 MB at 1 MiB), a few MB more for WIDE_LITERALS_LEVEL's once
# a save has 16-bit literals; above it a fresh one costs little beside the compression. Each
# one-call compression starts a new frame, byte for byte what a new compressor writes.
KEPT_COMPRESSOR_BYTES = 1 << 18


def _kept_compressor(level: int) -> zstandard.ZstdCompressor:
    return kept_by_thread(("zstd compressor", level), lambda: _compressor(level))


_COMPRESS: dict[StripMethod, Callable[[bytes], bytes]] = {
    StripMethod.RUNS_ZLIB: _zlib_compress,
    StripMethod.RUNS_ZSTD: _zstd_compress,
}

# --- the codebook -------------------------------------------------------------------------

# The strips' level: on graphics of 300-7,700 exact colours level 19 made codebooks 0.3 % smaller
# (larger on two of ten) in 1.3-2.7 x the time, up to 5.6 ms.
CODEBOOK_LEVEL = ZSTD_LEVEL
# A coded codebook is kept only at most this fraction of the raw entries: its zstd frame costs
# a reader ~40 us with caches cold (8 us warm), which a k-means codebook of 64 entries in path
# order, 0.94 x its raw bytes, does not repay (Kodak loads 2.4 % longer for 0.02 % fewer bytes;
# benchmarks/codebook_order.py).
CODEBOOK_KEEP = 0.875


def encode_codebook(codebook: np.ndarray) -> bytes | None:
    """The codebook section of a coded codebook (spec 6.1): one zstd frame of each channel's
    differences from the entry before (mod 256), channel by channel; None where that is not
    CODEBOOK_KEEP of the raw entries or less. Exact colours come sorted (np.unique) and, drawn with
    antialiasing, step little from one to the next: 1.65-4.6 x smaller on graphics of 296-7,718
    colours (benchmarks/many_colours.py). A k-means codebook comes in path order (quantize.
    _along_path): 0.70 x its raw bytes at K = 256 (benchmarks/codebook_order.py)."""
    coded = coded_codebook(codebook)
    return coded if len(coded) <= CODEBOOK_KEEP * codebook.size else None


def coded_codebook(codebook: np.ndarray) -> bytes:
    """The zstd frame of the codebook's differences (spec 6.1), whether or not it is the shorter."""
    planes = np.ascontiguousarray(codebook.T, dtype=np.uint8)
    deltas = np.diff(planes, axis=1, prepend=np.zeros((len(planes), 1), np.uint8))
    return _zstd_compress(deltas.tobytes(), CODEBOOK_LEVEL)


# --- one strip ----------------------------------------------------------------------------


def encode_strip(indices: np.ndarray, bits_per_index: int, method: StripMethod, palette: Palette | None = None, weigh: bool = True, known: bytes | None = None, drawn: bool = False, ordered: bool = False) -> bytes:
    """One strip of (rows, width) indices: strip_method byte and payload, the smaller of RAW and
    `method`; with zstd, when runs leave few literals, or the image is `drawn` (writer_strips),
    ROWS_ZSTD instead of runs where a quick trial at PROBE_LEVEL finds rows smaller (under
    ROWS_REPEAT x runs for a strip of many literals): one full compression, not two.
    NEAR_FLAT (needs the `palette`, k <= 4,096; _near_coded) is weighed against those zstd
    methods: far repeats (a drawing's, tiles of one photo) zstd finds and the near model does
    not. A strip of at most SMALL_STRIP_PIXELS tries every way instead of the trial (_every_way).
    weigh=False stores near coding wherever it can, unweighed: a psnr= search sizes each k so, as
    zstd's methods almost never win on a photo's strips and trying them took half the time of
    coding one whose rate-optimized indices leave few literals. `known`: this very strip, near
    coded so, used rather than coded again. `ordered`: the codebook runs from dark to light
    (predictable), so MED_ROWS_ZSTD is tried too where zstd is (_runs_or_rows)."""
    if method in NEAR_METHODS:  # near coding, either way (_near_coded)
        coded = _near_strip(indices, bits_per_index, palette, weigh, known, drawn, ordered)
    elif method == StripMethod.ROWS_ZSTD:
        coded = _rows_strip(indices, bits_per_index)
    elif method in _COMPRESS:
        coded = _runs_or_rows(indices, bits_per_index, method, _run_flags(indices), drawn=drawn, ordered=ordered)
    else:
        coded = None
    # RAW is packed only when it is the smaller: bit-packing at odd widths costs ~7 ms a strip.
    if coded is not None and len(coded) < 1 + raw_stream_length(indices.size, 1, bits_per_index):
        return coded
    return bytes([StripMethod.RAW]) + pack_indices(indices, bits_per_index)


def _runs_or_rows(indices: np.ndarray, bits_per_index: int, method: StripMethod, flags: np.ndarray, rival: int | None = None, drawn: bool = False, whole_bytes: bool = False, ordered: bool = False) -> bytes | None:
    """A runs strip (`flags`: the indices' run flags), or with zstd, when runs leave few
    literals or the image is `drawn`, a ROWS_ZSTD one where a trial finds rows smaller (with
    `whole_bytes`, near coding's search for the smallest file: BYTE_ROWS_ZSTD where a sample
    says so, _rows_either_way), or for an `ordered` codebook a MED_ROWS_ZSTD one where the
    trial finds that smaller (_predicted_or); a small strip the shortest of every way
    (_every_way). None, compressing nothing at zstd's real levels, where the trial shows that a
    `rival` strip of that many bytes is the smaller all the same (NEAR_SURE, NEAR_SURE_PHOTO)."""
    if indices.size <= SMALL_STRIP_PIXELS:
        return min(_every_way(indices, bits_per_index, method, flags, whole_bytes, ordered), key=len)
    streams = _runs_streams(indices, flags, bits_per_index)
    few = _few_literals(flags)
    predicted = ordered and method == StripMethod.RUNS_ZSTD and _predicted_fits(indices, bits_per_index)
    if method != StripMethod.RUNS_ZSTD or (rival is None and not (few or drawn or predicted)):
        return _coded_runs(*streams, method, bits_per_index)
    runs_trial = sum(_probe_size(stream) for stream in streams)
    rows = _packed_rows(indices, bits_per_index) if few or drawn else b""
    rows_trial = _probe_size(rows) if rows else 0
    take_rows = bool(rows) and rows_trial < (1.0 if few else ROWS_REPEAT) * runs_trial

    def unpredicted() -> bytes:  # the way zstd's trial took, coded for real
        if take_rows:
            return _rows_either_way(indices, bits_per_index, rows) if whole_bytes else _coded_rows(rows)
        return _coded_runs(*streams, method, bits_per_index)

    if predicted and (med := _predicted_or(indices, rows_trial if take_rows else runs_trial, few or drawn, unpredicted)) is not None:
        return med  # coded at its real level whatever the rival: its trial says little of that
    if not (few or drawn):  # a photo's strip against a rival: runs only
        return None if rival is not None and rival <= NEAR_SURE_PHOTO * runs_trial else unpredicted()
    if take_rows and rival is not None and rival <= NEAR_SURE[1] * rows_trial:
        return None
    sure = NEAR_SURE[0] if few else NEAR_SURE_PHOTO  # many literals, rows not taken: a photo's margin
    return None if not take_rows and rival is not None and rival <= sure * runs_trial else unpredicted()


def _predicted_fits(indices: np.ndarray, bits_per_index: int) -> bool:
    """Whether MED_ROWS_ZSTD may store this strip: k <= 256, rows of at most MED_MAX_WIDTH pixels."""
    return bits_per_index <= 8 and indices.shape[1] <= MED_MAX_WIDTH


def _predicted_or(indices: np.ndarray, trial: int, drawn: bool, unpredicted: Callable[[], bytes]) -> bytes | None:
    """A MED_ROWS_ZSTD strip of these indices (k <= 256) where the quick trial codes their
    residuals in under MED_SURE x `trial` (that of the way zstd's trial took); between that and
    MED_MARGIN x, the smaller of it and `unpredicted`() (that way, coded, side by side with
    the residuals where a worker is spare: most of a grey drawing's save); else None.
    For a `drawn` strip, whose rows repeat, MED_DRAWN's bounds."""
    predicted = residuals(indices).tobytes()
    sure, margin = MED_DRAWN if drawn else (MED_SURE, MED_MARGIN)
    ratio = _probe_size(predicted) / max(1, trial)
    if ratio >= margin:
        return None
    if ratio < sure:
        return _coded_predicted(predicted, drawn)
    med, other = side_by_side(lambda: _coded_predicted(predicted, drawn), unpredicted)
    return min(med, other, key=len)


def _every_way(indices: np.ndarray, bits_per_index: int, method: StripMethod, flags: np.ndarray, whole_bytes: bool = False, ordered: bool = False) -> list[bytes]:
    """Every way `method` allows to store a strip: zlib's runs and, unless zlib alone was asked
    (for readers without zstd), zstd's runs and rows (with `whole_bytes`, near coding's, rows in
    whole bytes too where packed rows are not; for an `ordered` codebook of k <= 256, predicted
    rows). For small strips, whose framing weighs (a zstd frame's is 9 bytes or more, zlib's 6)
    and where the trial often took runs where rows were shorter, while trying all costs little."""
    streams = _runs_streams(indices, flags, bits_per_index)
    ways = [_coded_runs(*streams, StripMethod.RUNS_ZLIB, bits_per_index)]
    if method != StripMethod.RUNS_ZLIB:
        ways += [_coded_runs(*streams, StripMethod.RUNS_ZSTD, bits_per_index), _rows_strip(indices, bits_per_index)]
        if whole_bytes and packing_width(bits_per_index) < 8:
            ways.append(_coded_rows(_packed_rows(indices, bits_per_index, StripMethod.BYTE_ROWS_ZSTD), StripMethod.BYTE_ROWS_ZSTD))
        if ordered and _predicted_fits(indices, bits_per_index):
            ways.append(_coded_predicted(residuals(indices).tobytes(), drawn=True))
    return ways


def _near_strip(indices: np.ndarray, bits_per_index: int, palette: Palette | None, weigh: bool = True, known: bytes | None = None, drawn: bool = False, ordered: bool = False) -> bytes:
    """A near coded strip (_near_coded; `known`, if given, is it), or (if `weigh`) the zstd
    methods' where they are smaller (drawings, small strips, a photo whose parts repeat, which
    zstd finds and the near model does not), or theirs where near coding cannot go (k > 4,096,
    or a strip over NEAR_MAX_PIXELS: a row that wide)."""
    flags = _run_flags(indices)
    if not _near_fits(1 << bits_per_index, indices.size):
        coded = _runs_or_rows(indices, bits_per_index, StripMethod.RUNS_ZSTD, flags, drawn=drawn, ordered=ordered)
        assert coded is not None  # with no rival, always a strip
        return coded
    if palette is None:
        raise ValueError("a near coded strip needs the codebook's Palette")
    near = known or _near_coded(indices, palette)
    if not weigh:
        return near
    other = _runs_or_rows(indices, bits_per_index, StripMethod.RUNS_ZSTD, flags, len(near), drawn, whole_bytes=True, ordered=ordered)
    return near if other is None or len(near) <= len(other) else other


# near_flat is tried on a strip where at least this share of its pixels equal their four
# neighbours (on every third Kodak photo and the drawings made for
# tuning, whole images; measured once, not kept as a script): Kodak photos at 16 colours 0.42-0.58, near_flat 1.1-2.4 % smaller
# (kodim01 and kodim13, 0.21 and 0.12: 0.5-0.8 %), at 256 colours 0.02-0.10, within 0.02 %;
# the drawings 0.76-0.97, 1.2-11.5 % smaller, but the sprite sheet 0.02-0.04, the same.
NEAR_FLAT_SHARE = 0.25


def _near_coded(indices: np.ndarray, palette: Palette) -> bytes:
    """A NEAR_RANS strip, or the NEAR_FLAT one where that is shorter, tried for a small strip
    or where at least NEAR_FLAT_SHARE of the pixels equal their four neighbours (flat_share):
    stretches need them, and elsewhere (most photos' strips at 64 colours and more) near_flat
    gains within 0.02 % (the measurement at NEAR_FLAT_SHARE). Weighed, not assumed: a speck
    in the middle of a long stretch costs near_flat more than near_rans. Both are coded in
    full: a bound on near_rans's bytes from its tokens' entropy, which would spare its coder
    (a twentieth of a label map's save), failed on long periodic rows by up to 0.005 bits a
    token (measured once)."""
    if indices.size > SMALL_STRIP_PIXELS and flat_share(indices) < NEAR_FLAT_SHARE:
        return bytes([StripMethod.NEAR_RANS]) + encode_near(indices, palette)
    flat = bytes([StripMethod.NEAR_FLAT]) + encode_near(indices, palette, stretches=True)
    return min(bytes([StripMethod.NEAR_RANS]) + encode_near(indices, palette), flat, key=len)


def _runs_streams(indices: np.ndarray, flags: np.ndarray, bits_per_index: int) -> tuple[bytes, bytes]:
    """A runs strip's two streams before compression: the packed run flags, then the literals."""
    return np.packbits(flags).tobytes(), pack_indices(indices.ravel()[~flags], field_width(bits_per_index))


def _packed_rows(indices: np.ndarray, bits_per_index: int, method: StripMethod = StripMethod.ROWS_ZSTD) -> bytes:
    """The rows of a strip of `method` (ROWS_METHODS) before compression."""
    return pack_rows(indices.reshape(len(indices), -1), packing_width(bits_per_index, method))


def _rows_either_way(indices: np.ndarray, bits_per_index: int, packed: bytes) -> bytes:
    """A rows strip of these indices (`packed`: ROWS_ZSTD's packing of them): where that packs
    below a byte an index, a BYTE_ROWS_ZSTD one instead if a sample of the rows, compressed both
    ways as the writer compresses rows, comes out under BYTE_ROWS_MARGIN x in whole bytes (a
    strip no taller than the sample: the smaller of the two). Packed, a glyph or an edge repeats
    as bytes only at the same place within a byte: antialiased text at 4-16 colours comes out
    5-18 % smaller in whole bytes, drawings on a fixed pitch (a bitmap font's) no smaller
    (byte_rows.py). zstd's quick levels do not see it (whole bytes come out larger there). The
    two ways are compressed side by side where a worker is spare."""
    if packing_width(bits_per_index) >= 8 or BYTE_ROWS_MARGIN <= 0:  # a margin of 0: packed rows, no sample
        return _coded_rows(packed)
    sample = _sampled_rows(indices)
    whole = len(sample) == len(indices)
    narrow, wide = side_by_side(
        lambda: _coded_rows(packed if whole else _packed_rows(sample, bits_per_index)),
        lambda: _coded_rows(_packed_rows(sample, bits_per_index, StripMethod.BYTE_ROWS_ZSTD), StripMethod.BYTE_ROWS_ZSTD))
    if whole:
        return min(narrow, wide, key=len)
    if len(wide) >= BYTE_ROWS_MARGIN * len(narrow):
        return _coded_rows(packed)
    return _coded_rows(_packed_rows(indices, bits_per_index, StripMethod.BYTE_ROWS_ZSTD), StripMethod.BYTE_ROWS_ZSTD)


def _sampled_rows(indices: np.ndarray) -> np.ndarray:
    """Every BYTE_ROWS_SAMPLE_EVERY-th band of BYTE_ROWS_BAND rows (a strip of at most that
    many bands whole): bands, not single rows, so that a glyph's rows stay together."""
    if len(indices) <= BYTE_ROWS_SAMPLE_EVERY * BYTE_ROWS_BAND:
        return indices
    bands = [indices[top : top + BYTE_ROWS_BAND] for top in range(0, len(indices), BYTE_ROWS_SAMPLE_EVERY * BYTE_ROWS_BAND)]
    return np.concatenate(bands)


def _probe_size(data: bytes) -> int:
    """zstd's bytes for data at PROBE_LEVEL (~20x faster than the real levels) with long-distance
    matching, which finds the repeats far apart that the real levels' deeper search finds and
    PROBE_LEVEL alone misses (a text page's lines of glyphs: without it the trial chose runs,
    where rows came out 31 % smaller). The window spans the data and no more. Within
    trials_kept, a trial of the same bytes is run once."""
    kept: dict[tuple[int, int], int] | None = getattr(_kept_trials, "sizes", None)
    if kept is None:
        return _trial(data)
    key = (len(data), zlib.crc32(data))
    if key not in kept:
        kept[key] = _trial(data)
    return kept[key]


def _trial(data: bytes) -> int:
    parameters = zstandard.ZstdCompressionParameters.from_level(PROBE_LEVEL, source_size=len(data), enable_ldm=True, window_log=_window_log(len(data)))
    return len(zstandard.ZstdCompressor(compression_params=parameters).compress(data))


_kept_trials = threading.local()


@contextlib.contextmanager
def trials_kept(sizes: dict[tuple[int, int], int] | None = None) -> Iterator[dict[tuple[int, int], int]]:
    """Within the block, this thread keeps its quick trials' results by the length and CRC-32
    of the bytes tried, so that a writer that takes a floor from the trial (runs_floor,
    rows_floor) and then codes that one strip (a single job) does not run the trial twice (a
    twentieth of a small drawing's save). Not by the bytes themselves, which for a 4-megapixel
    drawing's rows and residuals are 8 MB, nor by a BLAKE2b digest, which took longer than the
    trial; trials that collide would only share a size (a choice between ways, never what is
    stored). Yields the trials kept; given them (`sizes`), another thread shares them."""
    outer = getattr(_kept_trials, "sizes", None)
    _kept_trials.sizes = sizes if sizes is not None else {} if outer is None else outer
    try:
        yield _kept_trials.sizes
    finally:
        _kept_trials.sizes = outer


def _runs_strip(indices: np.ndarray, bits_per_index: int, method: StripMethod) -> bytes:
    """A runs strip of these indices, whatever rows would give."""
    flags = _run_flags(indices)
    return _coded_runs(*_runs_streams(indices, flags, bits_per_index), method, bits_per_index)


def _rows_strip(indices: np.ndarray, bits_per_index: int) -> bytes:
    """A rows_zstd strip of these indices, whatever runs would give."""
    return _coded_rows(_packed_rows(indices, bits_per_index))


def _coded_runs(flags: bytes, literals: bytes, method: StripMethod, bits_per_index: int) -> bytes:
    """A runs strip from its packed flags and literals (16-bit ones with zstd at WIDE_LITERALS_LEVEL)."""
    compress = _COMPRESS[method]
    coded_flags = compress(flags)
    wide = field_width(bits_per_index) == 16 and method == StripMethod.RUNS_ZSTD
    coded_literals = _zstd_compress(literals, WIDE_LITERALS_LEVEL) if wide else compress(literals)
    return bytes([method]) + _U64.pack(len(coded_flags)) + coded_flags + coded_literals


def _coded_rows(rows: bytes, method: StripMethod = StripMethod.ROWS_ZSTD) -> bytes:
    """A rows strip (ROWS_METHODS) of these rows, packed as `method` packs them."""
    compressor = zstandard.ZstdCompressor(compression_params=_rows_parameters(len(rows)))
    return bytes([method]) + compressor.compress(rows)


def _coded_predicted(predicted: bytes, drawn: bool = False) -> bytes:
    """A MED_ROWS_ZSTD strip of these residuals (predict.residuals, as bytes): a photo's with
    _predicted_parameters, a `drawn` strip's, whose rows repeat far apart, with the rows'."""
    parameters = _rows_parameters(len(predicted)) if drawn else _predicted_parameters(len(predicted))
    return bytes([StripMethod.MED_ROWS_ZSTD]) + zstandard.ZstdCompressor(compression_params=parameters).compress(predicted)


def _predicted_parameters(size: int) -> zstandard.ZstdCompressionParameters:
    """zstd's optimal parser, which prices each residual by the entropy coder's own costs, over
    a window that spans the residuals, with a shallow search (a small chain table, a hash table
    large enough to find a repeat far back) for matches of PREDICTED_MIN_MATCH bytes and more:
    a photo's residuals are noise but for runs of zeros. On every third Kodak photo as grey at
    K = 16, 64, 256 (measured once, not kept as a script), a search of 1 in tables of 2^10 and
    2^11 came out 0.2 % smaller than level 15 in a third of its time, 0.05 % larger than level
    19 in a sixth, 0.3 % smaller than a search of 2 in tables of 2^16 in 0.69 x its time, and a
    lazy parser 8 % larger; a hash table of 2^17 then cost 0.08 % more bytes and 1.01 x the time."""
    window = _window_log(size)
    return zstandard.ZstdCompressionParameters(
        window_log=window, chain_log=min(window, PREDICTED_CHAIN_LOG), hash_log=min(window + 1, PREDICTED_HASH_LOG), search_log=PREDICTED_SEARCH_LOG,
        min_match=PREDICTED_MIN_MATCH, target_length=PREDICTED_TARGET_LENGTH, strategy=zstandard.STRATEGY_BTOPT, write_content_size=True, write_checksum=False)


def _rows_parameters(size: int) -> zstandard.ZstdCompressionParameters:
    """zstd's optimal parser over a window that spans the rows (and tables that do, up to
    ROWS_TABLES_LOG), a shallow search (5) for matches of 3 bytes and more, weighed up to
    ROWS_TARGET_LENGTH: on drawings made for tuning these come out 5.7 % smaller than level
    17, in 1.3 x its time (rows_level.py)."""
    window = _window_log(size)
    tables = min(window + 1, ROWS_TABLES_LOG)
    return zstandard.ZstdCompressionParameters(
        window_log=window, chain_log=tables, hash_log=tables, search_log=ROWS_SEARCH_LOG, min_match=ROWS_MIN_MATCH,
        target_length=ROWS_TARGET_LENGTH, strategy=zstandard.STRATEGY_BTOPT, write_content_size=True, write_checksum=False)


def _window_log(size: int) -> int:
    """The smallest zstd window that spans size bytes, within zstd's limits for any decoder."""
    return min(max(10, (size - 1).bit_length()), 27)


# --- all strips ---------------------------------------------------------------------------


def parallel_map(function: Callable[..., bytes | np.ndarray], jobs: Sequence[tuple[object, ...]]) -> list:
    """function(*job) for each job, on the shared pool's threads when there is more than one."""
    return run_jobs(function, jobs)


def encode_strips(indices: np.ndarray, bits_per_index: int, method: StripMethod, palette: Palette | None = None, weigh: bool = True, known: Sequence[bytes] = (), ordered: bool = False) -> Iterable[bytes]:
    """The index stream of index_coding 1: strip table, then every strip (NEAR_FLAT needs the
    codebook's `palette`; `weigh`, `ordered` as encode_strip's). `known`: an index stream (table, then
    strips) these very indices were coded to before with `method`: where its strips are cut as
    these are, its near coded strips are used again."""
    height, width = indices.shape
    first = indices[: strip_height_for(width, height)]
    known_height = _U32.unpack_from(known[0])[0] if known else 0
    if weigh or method != StripMethod.NEAR_FLAT or not _near_fits(1 << bits_per_index, width):
        # a known first strip of the same rows, near coded, spares coding it again to judge it
        same_first = known_height == len(first) and len(known) > 1 and is_near(known[1])
        strip_height, drawn = writer_strips(first, width, height, bits_per_index, method, palette, len(known[1]) - 1 if same_first else None)
    else:  # unweighed, strips are sized as a photo's (which near coding codes), as the writer sizes a photo's
        # but where decoding is cheap, a drawing's (an image of at most NEAR_SPLIT_PIXELS is one strip either way)
        drawn = palette is not None and indices.size > NEAR_SPLIT_PIXELS and _flat_near(indices, palette)
        strip_height = _strip_height(width, height, method, drawn)
    tops = range(0, height, strip_height)
    reused: list[bytes | None] = [None] * len(tops)
    if known_height == strip_height and len(known) == len(tops) + 1:
        reused = [strip if is_near(strip) else None for strip in known[1:]]
    jobs = [(indices[top : top + strip_height], bits_per_index, method, palette, weigh, strip, drawn, ordered) for top, strip in zip(tops, reused, strict=True)]
    strips = parallel_map(encode_strip, jobs)
    table = StripTable(strip_height, tuple(len(strip) for strip in strips), tuple(crc32(strip) for strip in strips))
    return [pack_table(table), *strips]


def predictable(codebook: np.ndarray) -> bool:
    """Whether a codebook of 2 to 256 entries runs from dark to light or back, every channel
    ascending or every one descending (a grayscale image's, sorted by the writer; a grey RGB
    image's, in path order), so that its indices are grey levels that MED predicts
    (MED_ROWS_ZSTD)."""
    if not 2 <= len(codebook) <= 256:
        return False
    steps = np.diff(codebook.astype(np.int16), axis=0)
    return bool(np.all(steps >= 0) or np.all(steps <= 0))


def _flat_near(indices: np.ndarray, palette: Palette) -> bool:
    """Whether near_rans is estimated to code these indices in under NEAR_ONE_STRIP_BITS a pixel."""
    return estimated_size(indices, palette.codebook, NEAR_ONE_STRIP_STEP) * 8 < NEAR_ONE_STRIP_BITS * indices.size


def is_near(strip: bytes) -> bool:
    """Whether a strip's bytes start with a near coded strip_method."""
    return bool(strip) and strip[0] in NEAR_METHODS


def uncoded_is_no_longer(pixels: int, bits_per_index: int, strips_length: int) -> bool:
    """Whether index_coding 0 (the bits packed, no strip table) is no longer than strips of
    strips_length bytes: a tiny image, or one whose indices do not compress (the file_crc
    still covers them; only the strips' own CRCs go)."""
    return raw_stream_length(pixels, 1, bits_per_index) <= strips_length


def strips_minor(strips: Iterable[bytes], k: int) -> int:
    """The version_minor these strips' methods need for k entries (ROWS_ZSTD 1.3, NEAR_RANS
    1.4, 1.6 above 256 entries, 1.7 above 1,024, NEAR_FLAT 1.8, BYTE_ROWS_ZSTD 1.9)."""
    return strip_minor((strip[0] for strip in strips), k)
