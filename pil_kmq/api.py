"""The numpy API, mirroring the article: image -> (indices, codebook) -> file bytes -> image.

The Pillow plugin and the CLI both go through these functions and option checks.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from concurrent.futures import wait
from dataclasses import dataclass
from functools import partial

import numpy as np

from .codec import DEFAULT_MAX_PIXELS, Coded, auto_coded, coded, decode_bytes, encode_parts, psnr_methods, read_prefix, weighed
from .coding import looks_drawn
from .format import (
    CRC_SIZE,
    EXIF_PREFIX,
    HEADER_SIZE,
    MAX_K,
    METADATA_CHUNKS,
    TIFF_HEADERS,
    Header,
    IndexCoding,
    StripMethod,
    index_dtype,
    pack_metadata,
    unpack_metadata,
)
from .jobs import WORKERS, abandon, in_pool, interrupts_kept, on_own_thread
from .near import MAX_K as NEAR_MAX_K
from .quantize import Clustering, Quantized, RowSource, SharedClustering
from .rate import loss_budget, smallest_for_psnr, trader_for

DEFAULT_K = 16
DEFAULT_SEED = 0
MAX_SEED = 2**32 - 1  # what scikit-learn accepts as random_state
# compression= option -> how strips are stored; None is index_coding 0, the bit-packed stream.
# "auto" is zstd's, but a drawing saved with k= may be near coded (codec.auto_coded), and a
# psnr= search mostly is (codec.psnr_methods); "near" writes near_flat strips (near_rans
# for a small strip where that is shorter).
COMPRESSIONS: dict[str, StripMethod | None] = {
    "auto": StripMethod.RUNS_ZSTD,
    "none": None,
    "zlib": StripMethod.RUNS_ZLIB,
    "zstd": StripMethod.RUNS_ZSTD,
    "near": StripMethod.NEAR_FLAT,
}
# The larger codebooks a psnr= search tries (kept only if their file is smaller) are seeded
# once, not five times (k <= 64): on the Kodak set the files came out as small (0.9999x,
# geometric mean of 42 saves) for 9 % less save time.
GROWTH_SEEDINGS = 1
DEFAULT_COMPRESSION = "auto"  # small files, fast decoding (benchmarks/README.md)
# Where a psnr= save runs both searches (a drawing whose estimate falls between the margins),
# they run side by side: a drawing's search keeps about one core busy (CPU time 1.0-1.4 x its
# wall time), so the other was idle. Up to this many pixels the image is read whole for both
# threads; a larger one's searches run one after the other, its peak memory that of one.
SIDE_BY_SIDE_PIXELS = 1 << 21


def check_k(k: object) -> int:
    """Validate the `k` option: an int from 1 to 65,536."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= int(k) <= MAX_K:
        raise ValueError(f"k must be an int from 1 to {MAX_K:,}, not {k!r}")
    return int(k)


def check_seed(seed: object) -> int:
    """Validate the `seed` option: an int from 0 to 2**32 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"seed must be an int from 0 to {MAX_SEED}, not {seed!r}")
    return int(seed)


def check_psnr(psnr: object) -> float:
    """Validate the `psnr` option: a number of dB above 0 (inf: lossless)."""
    if isinstance(psnr, bool) or not isinstance(psnr, numbers.Real) or math.isnan(float(psnr)) or not float(psnr) > 0:
        raise ValueError(f"psnr must be a number of dB above 0, not {psnr!r}")
    return float(psnr)


def check_psnr_loss(loss: object) -> float:
    """Validate the `psnr_loss` option: None or a number of dB from 0 (0: nearest entries only)."""
    if loss is None:
        return 0.0
    if isinstance(loss, bool) or not isinstance(loss, numbers.Real) or not math.isfinite(float(loss)) or float(loss) < 0:
        raise ValueError(f"psnr_loss must be a number of dB from 0 up, not {loss!r}")
    return float(loss)


def check_dither(dither: object) -> bool:
    """Validate the `dither` option: True or False."""
    if not isinstance(dither, (bool, np.bool_)):
        raise ValueError(f"dither must be True or False, not {dither!r}")  # noqa: TRY004 - Pillow's bad-option error
    return bool(dither)


def check_metadata(metadata: dict[str, object]) -> dict[str, bytes]:
    """Validate icc_profile, exif and xmp values (bytes; exif also a PIL.Image.Exif; xmp also
    str; None or empty: none) and return them as the bytes KMQ stores (spec 5.1)."""
    stored = {}
    for key, value in metadata.items():
        if key not in METADATA_CHUNKS:
            raise ValueError(f"unknown metadata {key!r}: KMQ stores {', '.join(METADATA_CHUNKS)}")
        if value is None:
            continue
        if key == "exif" and hasattr(value, "tobytes") and not isinstance(value, (bytes, bytearray, memoryview)):
            try:
                value = value.tobytes()  # a PIL.Image.Exif
            except Exception as error:  # noqa: BLE001 - Pillow raises struct.error, TypeError... on odd tag types
                raise ValueError(f"exif cannot be encoded: {error}") from None
        if key == "xmp" and isinstance(value, str):
            value = value.encode("utf-8")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ValueError(f"{key} must be bytes, not {type(value).__name__}")  # noqa: TRY004 - Pillow's bad-option error
        value = bytes(value)
        if key == "exif" and value:
            value = value.removeprefix(EXIF_PREFIX)
            if not value.startswith(TIFF_HEADERS):
                raise ValueError("exif must be EXIF data: a TIFF header (II*\\0 or MM\\0*), optionally after Exif\\0\\0")
        if value:
            stored[key] = value
    return stored


def check_compression(compression: object) -> StripMethod | None:
    """Validate the `compression` option (a name in COMPRESSIONS); the strip method it selects."""
    if not isinstance(compression, str) or compression not in COMPRESSIONS:
        names = ", ".join(repr(name) for name in COMPRESSIONS)
        raise ValueError(f"compression must be one of {names}, not {compression!r}")
    return COMPRESSIONS[compression]


def _as_pixels(image: np.ndarray | RowSource) -> np.ndarray | RowSource:
    if not isinstance(image, np.ndarray) and hasattr(image, "shape") and len(image.shape) == 3:
        # A row-strip reader (read strip by strip, never whole): its dtype is checked per strip.
        if not 1 <= image.shape[2] <= 4 or 0 in image.shape:
            raise ValueError(f"image must have shape (height, width, 1..4 channels), not {tuple(image.shape)}")
        return image
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be a uint8 array, not {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or not 1 <= array.shape[2] <= 4 or 0 in array.shape:
        raise ValueError(f"image must have shape (height, width) or (height, width, 1..4 channels), not {array.shape}")
    return array


@interrupts_kept
def compress_image(
    image: np.ndarray | RowSource,
    k: int | None = None,
    seed: int = DEFAULT_SEED,
    psnr: float | None = None,
    dither: bool = False,
    psnr_loss: float | None = None,
    compression: str = DEFAULT_COMPRESSION,
) -> Quantized:
    """Cluster an (H, W) or (H, W, C) uint8 image into at most k colours (default 16), or make
    the smallest file that reaches `psnr` dB (k and psnr are exclusive).

    Returns indices (H, W) (uint8 when K <= 256, else uint16) and codebook (K, C) uint8, K <= k.
    With k, every pixel's index is its nearest codebook colour (within its alpha class: fully
    transparent and fully opaque pixels keep their alpha exactly), and an image with <= k
    colours is kept exactly. psnr_loss=dB lets neighbouring pixels share one index instead (a
    run, nearly free to store; with compression="near" and k <= 1,024, whichever of their
    four neighbours' indices and the colours nearest their prediction costs least error and
    bits), each entry then moving to the mean of its pixels, while PSNR drops by at most that
    much. With psnr, k and these choices are made together for the smallest file in
    `compression`. dither=True maps the pixels by Floyd-Steinberg error diffusion instead (the
    codebook is the same). With k (not psnr_loss) the result is a Plain one, an Exact one where
    the image has at most k colours: compression="auto" may write those near_rans (for_writing).
    """
    if k is not None and psnr is not None:
        raise ValueError("give k or psnr, not both: psnr chooses k")
    seed, dither, loss = check_seed(seed), check_dither(dither), check_psnr_loss(psnr_loss)
    method = check_compression(compression)
    if loss and psnr is not None:
        raise ValueError("psnr_loss applies to k= without dither: psnr= already trades error for size")
    if loss and dither:
        raise ValueError("psnr_loss applies to k= without dither: both choose each pixel's index, so give one")
    pixels = _as_pixels(image)
    clustering = Clustering(pixels, seed)
    if psnr is not None:
        quantized = _for_psnr(pixels, clustering, check_psnr(psnr), method if not dither else None, compression)
        return _dithered(pixels, quantized.codebook) if dither else quantized
    quantized = clustering.at_k(check_k(DEFAULT_K if k is None else k))
    plain = _plain(quantized, clustering)
    if loss:
        trader = trader_for(pixels, quantized, method)
        return _smaller(trader.within(loss_budget(trader.error, trader.pixels_channels, loss)), plain, compression)
    if dither and not isinstance(plain, Exact):  # an exact codebook leaves dithering nothing to move
        return Plain(*_dithered(pixels, quantized.codebook))
    return plain


def _plain(quantized: Quantized, clustering: Clustering | SharedClustering) -> Plain:
    """A k= result as the writer takes it: Exact where its codebook holds every colour."""
    return Exact(*quantized) if len(quantized.codebook) == clustering.colors else Plain(*quantized)


def _as_written(result: Quantized, compression: str, weigh: bool = True, zstd: Coded | None = None) -> Coded:
    """result coded as the writer codes it (for_writing: auto's choice for a Plain one, else
    `compression`'s method, `weigh` as coded() takes it; `zstd` as auto_coded takes it)."""
    method, ready = for_writing(result, compression, zstd)
    return ready if isinstance(ready, Coded) else coded(ready, method, weigh)


def _file_bytes(result: Coded) -> int:
    """The bytes of the file a coded result makes (its index stream reused)."""
    return sum(len(part) for part in encode_parts(*result, result.method, reuse=result))


def _smaller(traded: Quantized, plain: Plain, compression: str) -> Quantized:
    """traded, or plain where its file is no larger. A trade for runs shortens runs' literals,
    but where the nearest indices look drawn it may lengthen the file: ragged runs break rows
    that repeat (rows_zstd) and the regions auto writes near_rans (a label map at 16 colours,
    1.3 x at 2 dB). There both are coded as the writer codes them (as Coded: it reuses the
    bytes kept) and the smaller kept, plain on a tie (its PSNR is the higher)."""
    if traded.indices is plain.indices:  # nothing traded (an exact image): auto may still choose
        return plain
    if not looks_drawn(plain.indices):
        return traded
    plain_coded, traded_coded = _as_written(plain, compression), _as_written(traded, compression)
    return traded_coded if _file_bytes(traded_coded) < _file_bytes(plain_coded) else plain_coded


def _for_psnr(pixels: np.ndarray | RowSource, clustering: Clustering, psnr: float, method: StripMethod | None, compression: str) -> Quantized:
    """The smallest k that reaches psnr; where strips code runs, the smallest file: from a k
    that reaches psnr (found roughly: larger k are tried anyway), k grows while traded indices
    (or, where they look drawn, the nearest ones, as _smaller weighs them) make a smaller file.
    "auto" searches for the methods psnr_methods gives, and keeps the smaller file."""
    if method is None:
        return clustering.at_psnr(psnr, MAX_K)  # bit-packed indices cost the same whatever they are
    first = clustering.at_psnr(psnr, MAX_K, narrow=False)
    zstd = coded(first, StripMethod.RUNS_ZSTD) if compression == "auto" else None  # what psnr_methods compares with; a runs search reuses it
    methods = psnr_methods(first, zstd) if zstd is not None else (method,)
    if len(methods) == 2 and _side_by_side_fits(pixels):
        found = _side_by_side(_whole(pixels), clustering, first, psnr, methods, compression, zstd)
    else:
        found = [_searched(pixels, clustering, first, psnr, each, compression, zstd) for each in methods]
    return min(found, key=lambda result: (_file_bytes(result), result.method == StripMethod.NEAR_FLAT))  # a tie keeps zstd's faster loads


def _whole(pixels: np.ndarray | RowSource) -> np.ndarray:
    """The whole image as one (H, W, C) array (a one-channel row source gives (H, W) rows)."""
    return np.asarray(pixels[0 : pixels.shape[0]]).reshape(pixels.shape)


def _side_by_side_fits(pixels: np.ndarray | RowSource) -> bool:
    """Whether two searches may run side by side: two cores, an image of at most
    SIDE_BY_SIDE_PIXELS, and not on a pool thread (a search there runs its jobs itself, and
    one on a new thread would wait on the pool, whose threads may all be waiting on it)."""
    return WORKERS > 1 and pixels.shape[0] * pixels.shape[1] <= SIDE_BY_SIDE_PIXELS and not in_pool()


def _side_by_side(image: np.ndarray, clustering: Clustering, first: Quantized, psnr: float, methods: tuple[StripMethod, ...], compression: str, zstd: Coded | None) -> list[Coded]:
    """_searched for each of two methods, the first on a thread of its own, sharing the
    clusterings of the k both try: the same files as one after the other."""
    shared = SharedClustering(clustering)
    try:
        other = on_own_thread("kmq-search", _searched, image, shared, first, psnr, methods[0], compression, zstd)
        try:
            mine = _searched(image, shared, first, psnr, methods[1], compression, zstd)
            wait([other])  # both searches end before drop_ahead, and before any error is seen
        except Exception:
            wait([other])
            raise
        except BaseException:  # Ctrl-C, in this search or while it waits for the other
            abandon([other])
            raise
        return [other.result(), mine]
    finally:
        clustering.drop_ahead()


def _searched(pixels: np.ndarray | RowSource, clustering: Clustering | SharedClustering, first: Quantized, psnr: float, method: StripMethod, compression: str, zstd: Coded | None = None) -> Coded:
    """smallest_for_psnr from `first` for `method`'s strips, coded as a plain save codes them
    (`zstd`: first's zstd strips, if coded already)."""

    def size(quantized: Quantized) -> tuple[int, Quantized]:
        result = coded(quantized, method, weigh=False)  # the winner's are written (weighed after)
        return _file_bytes(result), result

    def untraded(quantized: Quantized) -> tuple[int, Quantized] | None:
        if not looks_drawn(quantized.indices):
            return None
        result = _as_written(_plain(quantized, clustering), compression, False, zstd if quantized is first else None)  # as size()'s: weighed after
        return _file_bytes(result), result

    try:
        found = smallest_for_psnr(
            pixels, first, psnr, partial(clustering.at_k, seedings=GROWTH_SEEDINGS), size, min(clustering.colors, MAX_K), method, partial(clustering.ahead, seedings=GROWTH_SEEDINGS), untraded
        )
    finally:
        clustering.drop_ahead()
    result = weighed(found)
    assert isinstance(result, Coded)  # at_psnr's result reaches psnr; size() and untraded() code it
    return result


def _dithered(pixels: np.ndarray | RowSource, codebook: np.ndarray) -> Quantized:
    """Floyd-Steinberg indices onto the codebook, without the entries no pixel then uses."""
    from .dither import floyd_steinberg

    indices = floyd_steinberg(_whole(pixels), codebook)
    used = np.bincount(indices.ravel(), minlength=len(codebook)) > 0
    if used.all():
        return Quantized(indices, codebook)
    renumber = np.cumsum(used) - 1
    dtype = index_dtype(int(used.sum()))
    return Quantized(renumber.astype(dtype)[indices], codebook[used])


def reconstruct_image(indices: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """codebook[indices]: (H, W, C) uint8, or (H, W) for a one-channel codebook. The codebook
    holds colours of 0 to 255, uint8 or any integer type; ValueError for others (scikit-learn's
    float centres, cast, wrapped around: 300.5 became 44, -2 became 254)."""
    colours = np.asarray(codebook)
    if colours.dtype != np.uint8:
        if not np.issubdtype(colours.dtype, np.integer) or (colours.size and not 0 <= int(colours.min()) <= int(colours.max()) <= 255):
            raise ValueError(f"codebook must hold colours of 0 to 255 as integers, not {colours.dtype} values: round and clip first, e.g. np.clip(np.rint(centres), 0, 255).astype(np.uint8)")
        colours = colours.astype(np.uint8)
    image = colours[np.asarray(indices)]
    return image[:, :, 0] if image.shape[-1] == 1 else image


def encode_kmq(
    indices: np.ndarray | Quantized, codebook: np.ndarray | None = None, compression: str = DEFAULT_COMPRESSION, metadata: dict[str, object] | None = None
) -> bytes:
    """The bytes of a KMQ file holding these indices (H, W) and codebook (K, C), and metadata
    ("icc_profile", "exif", "xmp": bytes); ValueError if they cannot make a valid file. Given
    compress_image's result alone (`encode_kmq(result)`), the file Image.save writes of it: a
    psnr= search's coding is kept (its indices and codebook given apart are coded afresh, and
    "auto" codes a photo's with zstd: 25-45 % larger on sample photos)."""
    result: Quantized | None = None
    if codebook is None:
        if not isinstance(indices, Quantized):
            raise TypeError("encode_kmq takes indices and a codebook, or compress_image's result alone")
        result, (indices, codebook) = indices, indices
    method = check_compression(compression)
    extension = pack_metadata(check_metadata(metadata or {}))
    indices, codebook = np.asarray(indices), np.asarray(codebook)
    if indices.ndim != 2 or 0 in indices.shape or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices must be a non-empty 2-D integer array (height, width), not {indices.dtype} {indices.shape}")
    if codebook.ndim != 2 or codebook.dtype != np.uint8 or not 1 <= codebook.shape[1] <= 4 or not 1 <= len(codebook) <= MAX_K:
        raise ValueError(f"codebook must be uint8 of shape (1 to {MAX_K:,} entries, 1 to 4 channels), not {codebook.dtype} {codebook.shape}")
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= len(codebook):
        raise ValueError(f"indices must be 0 to k-1={len(codebook) - 1}, found {low if low < 0 else high}")
    warn_if_not_near(len(codebook), compression, stacklevel=2)
    # indices and codebook given apart are the image itself: kept exactly, for compression="auto"
    method, quantized = for_writing(Exact(indices, codebook) if result is None else result, compression)
    return b"".join(encode_parts(indices, codebook, method, extension, quantized))


class Plain(Quantized):
    """A k= result whose indices were not traded for bits (nearest entries, or dithered) and
    are not coded yet: compression="auto" may write it near_rans (codec.auto_coded)."""


class Exact(Plain):
    """A Plain result that holds its image exactly, every colour an entry."""


def warn_if_not_near(k: int, compression: str, stacklevel: int) -> None:
    """A warning where compression="near" was asked for more entries than near coding takes:
    the file is written, with zstd's strips. stacklevel counts from the caller (1: the caller)."""
    if compression == "near" and k > NEAR_MAX_K:
        warnings.warn(f'compression="near" codes at most {NEAR_MAX_K:,} colours: these {k:,} are coded with zstd', stacklevel=stacklevel + 1)


def for_writing(quantized: Quantized, compression: str, zstd: Coded | None = None) -> tuple[StripMethod | None, Quantized]:
    """The strip method to write compress_image's result with, and the result to hand the
    writer (encode_parts' reuse): with "auto", a Plain one coded as auto_coded chooses (`zstd`
    as it takes it); a Coded one (a psnr= search's) in the method it was coded with."""
    method = check_compression(compression)
    if compression == "auto" and isinstance(quantized, Plain):
        chosen = auto_coded(quantized, isinstance(quantized, Exact), zstd)
        return chosen.method, chosen
    return (quantized.method if isinstance(quantized, Coded) else method), quantized


def decode_kmq(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[Header, Quantized]:
    """Decode KMQ file bytes: the header and (indices (H, W), codebook (K, C)). Raises KmqError
    (an OSError) for a malformed file, or one declaring more than max_pixels pixels."""
    return decode_bytes(_file_bytes_given(data, "decode_kmq"), max_pixels)


def _file_bytes_given(data: object, name: str) -> bytes | bytearray | memoryview:
    """data, if it is a file's bytes; TypeError saying so for a path or file object (a path's
    characters read as bytes gave 'not a KMQ file' for a good file)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    hint = " (a path: read its bytes first, or open it with stream.open_kmq or Image.open)" if isinstance(data, (str, os.PathLike)) else ""
    raise TypeError(f"{name} takes a KMQ file's bytes, not {type(data).__name__}{hint}")


def read_metadata(data: bytes) -> dict[str, bytes]:
    """The metadata of KMQ file bytes (from their start): "icc_profile", "exif", "xmp" as
    Pillow's im.info holds them; KmqError if the header or extension area is malformed."""
    return unpack_metadata(read_prefix(_file_bytes_given(data, "read_metadata"))[1])


@dataclass(frozen=True)
class SizeReport:
    """The article's size table for one KMQ file, in bits."""

    header: Header

    @property
    def original_bits(self) -> int:
        """The image at 8 bits per channel: W x H x 24 for RGB."""
        return self.header.width * self.header.height * self.header.channels * 8

    @property
    def index_bits(self) -> int:
        """W x H x bits_per_index for an uncoded stream, else the coded stream's bits (strip table included)."""
        h = self.header
        if h.index_coding == IndexCoding.NONE:
            return h.width * h.height * h.bits_per_index
        return h.index_stream_length * 8

    @property
    def codebook_bits(self) -> int:
        return self.header.codebook_length * 8

    @property
    def payload_bits(self) -> int:
        """Indices + codebook: the article's "compressed size"."""
        return self.index_bits + self.codebook_bits

    @property
    def total_bits(self) -> int:
        """The whole file."""
        return self.header.file_length * 8

    @property
    def overhead_bits(self) -> int:
        """Header, extensions, file_crc and the stream's padding bits."""
        return self.total_bits - self.payload_bits

    def rows(self) -> list[tuple[str, int]]:
        h = self.header
        c = h.channels
        if h.index_coding == IndexCoding.NONE:
            index_row = f"Indices ({h.width}x{h.height}x{h.bits_per_index})"
        else:
            index_row = f"Indices, strip-coded ({self.index_bits / (h.width * h.height):.3f} bits/pixel)"
        return [
            (f"Original size ({h.width}x{h.height}x{8 * c})", self.original_bits),
            (index_row, self.index_bits),
            (f"Codebook, coded ({h.k} entries x {c})" if h.codebook_stream_length else f"Codebook ({h.k}x{c}x8)", self.codebook_bits),
            ("Indices + codebook", self.payload_bits),
            (f"Header {HEADER_SIZE} B, extensions, CRC {CRC_SIZE} B, padding", self.overhead_bits),
            ("File total", self.total_bits),
        ]

    def __str__(self) -> str:
        lines = [f"{'Metric':<46} {'bits':>14} {'bytes':>12}"]
        for name, bits in self.rows():
            lines.append(f"{name:<46} {bits:>14,} {bits / 8:>12,.1f}")
        lines.append(f"{'Compression ratio, indices + codebook':<46} {self.payload_bits / self.original_bits:>14.4f}")
        lines.append(f"{'Compression ratio, file total':<46} {self.total_bits / self.original_bits:>14.4f}")
        return "\n".join(lines)


def size_report(header: Header) -> SizeReport:
    """The size table (original, index, codebook, header bits, total, ratio) of a file, from its
    header (decode_kmq(data)[0], or an opened image's kmq_header)."""
    if not isinstance(header, Header):
        raise TypeError(f"size_report takes a file's Header (decode_kmq(data)[0]), not {type(header).__name__}")
    return SizeReport(header)
