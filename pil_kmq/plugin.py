"""Pillow glue for KMQ: open, decode, save, encode, registration. Knows nothing of k-means.

Reads top to bottom as data flows, like Pillow's own plugins (see QoiImagePlugin.py).
"""

from __future__ import annotations

import functools

import os
import warnings
from typing import IO, Any

import numpy as np
from PIL import Image, ImageFile

from .api import (
    DEFAULT_COMPRESSION,
    DEFAULT_SEED,
    check_compression,
    check_metadata,
    compress_image,
    for_writing,
    warn_if_not_near,
)
from .codec import IndexStreamDecoder, encode_parts
from .format import (
    HEADER_SIZE,
    KNOWN_CHUNKS,
    MAGIC,
    METADATA_CHUNKS,
    Header,
    KmqError,
    crc32,
    pack_metadata,
    parse_extensions,
    parse_header,
    unpack_metadata,
)
from .jobs import interrupts_kept

FORMAT = "KMQ"
CODEC = "kmq"
EXTENSION = ".kmq"
MIME = "image/x-kmq"

# Modes stored as they are (spec 4), and modes converted before storing: "1" and "PA" without
# loss; premultiplied alpha to straight alpha, as close as 8 bits allow, with a warning.
_NATIVE_MODES = {"L", "LA", "RGB", "RGBA"}
_LOSSLESS_CONVERSIONS = {"1": "L", "PA": "RGBA"}
_PREMULTIPLIED = {"RGBa": "RGBA", "La": "LA"}
_MAX_READ_BLOCK = 1 << 22  # several strips per read, so they decode in parallel


def _accept(prefix: bytes) -> bool:
    return prefix.startswith(MAGIC)


_PICKLED_HEADER = 6  # after Pillow's info, mode, size, palette, pixels and ImageFile's filename


class KmqImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "K-means quantized image"
    kmq_header: Header
    _prefix_crc: int

    def _open(self) -> None:
        assert self.fp is not None
        prefix = self.fp.read(HEADER_SIZE)
        if not _accept(prefix):
            raise SyntaxError("not a KMQ file")
        header = parse_header(prefix)  # validated before its extension_length is trusted
        try:
            extension = ImageFile._safe_read(self.fp, header.extension_length)
        except OSError as error:
            raise KmqError(f"truncated KMQ file: its extension area should be {header.extension_length} bytes") from error
        self.info.update(unpack_metadata(parse_extensions(extension, KNOWN_CHUNKS)))
        prefix_crc = crc32(prefix + extension)
        self.kmq_header = header
        self._prefix_crc = prefix_crc
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.tile = [ImageFile._Tile(CODEC, (0, 0, *self._size), header.codebook_offset, (header, prefix_crc))]
        self.decodermaxblock = max(self.decodermaxblock, min(header.file_length, _MAX_READ_BLOCK))

    def __getstate__(self) -> list[Any]:
        # Pillow pickles mode, size, info and pixels (a process pool's result, copy.deepcopy):
        # the header goes too, so that a re-save keeps k and kmq_header is there as documented.
        return [*super().__getstate__(), self.kmq_header]

    def __setstate__(self, state: list[Any]) -> None:
        super().__setstate__(state)
        if len(state) > _PICKLED_HEADER and isinstance(state[_PICKLED_HEADER], Header):
            self.kmq_header = state[_PICKLED_HEADER]

    def load(self) -> Image.core.PixelAccess | None:
        if self.tile and self.fp is not None and not ImageFile.LOAD_TRUNCATED_IMAGES:
            self._check_length()
        return super().load()

    def _check_length(self) -> None:
        """Refuse a file shorter than its header says before the image is allocated."""
        assert self.fp is not None
        try:
            here = self.fp.tell()
            end = self.fp.seek(0, os.SEEK_END)
            self.fp.seek(here)
        except (AttributeError, OSError, ValueError):
            return  # not seekable: the decoder finds the truncation as data runs out
        if end < self.kmq_header.file_length:
            raise KmqError(f"truncated KMQ file: {end} bytes of {self.kmq_header.file_length}")

    def verify(self) -> None:
        """Check lengths, padding, index range and every checksum without building the image."""
        if self.fp is None or not self.tile:
            raise RuntimeError("verify must be called directly after open")
        offset, header, prefix_crc = self.tile[0].offset, self.kmq_header, self._prefix_crc
        stream = IndexStreamDecoder(header, prefix_crc)
        self.fp.seek(offset)
        while not stream.done:
            block = self.fp.read(self.decodermaxblock)
            if not block:
                raise KmqError(f"truncated KMQ file: it should be {header.file_length} bytes")
            for _ in stream.feed(block):
                pass
        super().verify()


class KmqDecoder(ImageFile.PyDecoder):
    """Push-mode decoder: takes the file in any chunks, fills rows as they complete."""

    def init(self, args: tuple[Any, ...]) -> None:
        header, prefix_crc = args
        # The table maker holds no reference to the decoder: a cycle kept the decoder, and
        # with it the image's memory, alive until the garbage collector ran, so every load
        # wrote into freshly mapped pages (~380 page faults, a third of a Kodak load).
        self._stream = IndexStreamDecoder(header, prefix_crc, functools.partial(_entry_words, mode=self.mode))
        self._rawmode = _ENTRY_RAWMODES[self.mode]

    @interrupts_kept
    def decode(self, buffer: bytes | bytearray | memoryview | Image.SupportsArrayInterface) -> tuple[int, int]:
        data = memoryview(buffer)  # type: ignore[arg-type]
        for row, column, words in self._stream.feed(data):
            self._put(row, column, words)
        if self._stream.done:
            return -1, 0
        return len(data), 0

    def _put(self, row: int, column: int, words: np.ndarray) -> None:
        """Write a piece (whole rows, or part of one row), decoded straight to codebook
        entries as words, into the image through Pillow's raw unpacker."""
        assert self.im is not None
        height, width = words.shape
        x, y = self.state.xoff + column, self.state.yoff + row
        unpacker = Image._getdecoder(self.mode, "raw", self._rawmode, ())
        unpacker.setimage(self.im, (x, y, x + width, y + height))
        unpacker.decode(np.ascontiguousarray(words).data.cast("B"))


# Pillow raw modes of a codebook entry stored as one word (RGB padded to four bytes).
_ENTRY_RAWMODES = {"L": "L", "LA": "LA", "RGB": "RGBX", "RGBA": "RGBA"}
_ENTRY_WORDS = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def _entry_words(codebook: np.ndarray, mode: str) -> np.ndarray:
    """Each codebook entry's bytes, in the order of its Pillow raw mode (_ENTRY_RAWMODES), as one unsigned word."""
    k, channels = codebook.shape
    size = 4 if mode == "RGB" else channels
    entries = np.empty((k, size), dtype=np.uint8)  # written in place: a thumbnail's load is mostly such small steps
    entries[:, :channels] = codebook
    if mode == "RGB":  # the pad byte as Pillow's own decoders leave it
        entries[:, 3] = 255
    return entries.view(_ENTRY_WORDS[size]).reshape(-1)


class _ImageRows:
    """A Pillow image read as numpy row strips, so saving never holds a numpy copy of it all."""

    def __init__(self, image: Image.Image) -> None:
        self._image = image
        self.shape = (image.height, image.width, len(image.getbands()))

    def __getitem__(self, rows: slice) -> np.ndarray:
        top, bottom, _ = rows.indices(self._image.height)
        return np.asarray(self._image.crop((0, top, self._image.width, bottom)))


def storable(mode: str) -> bool:
    """True when KMQ stores images of this mode, as they are or converted without loss."""
    return mode in _NATIVE_MODES or mode in _LOSSLESS_CONVERSIONS or mode in _PREMULTIPLIED or mode == "P"


def _pixels_to_store(im: Image.Image) -> _ImageRows:
    """The pixels KMQ stores for this image; ValueError naming the mode when that would lose data."""
    mode = im.mode
    if mode in ("1", "L", "RGB") and "transparency" in im.info:  # a tRNS-style colour key: real alpha
        return _ImageRows(im.convert("RGBA" if mode == "RGB" else "LA"))
    if mode in _NATIVE_MODES:
        return _ImageRows(im)
    if mode in _LOSSLESS_CONVERSIONS:
        return _ImageRows(im.convert(_LOSSLESS_CONVERSIONS[mode]))
    if mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None and "A" in im.palette.mode)
        return _ImageRows(im.convert("RGBA" if has_alpha else "RGB"))
    if mode in _PREMULTIPLIED:
        warnings.warn(f"KMQ stores straight alpha: mode {mode!r} is saved as {_PREMULTIPLIED[mode]!r}", stacklevel=4)
        return _ImageRows(im.convert(_PREMULTIPLIED[mode]))
    raise ValueError(
        f"cannot save mode {mode!r} as KMQ: KMQ stores 8-bit 'L', 'LA', 'RGB' and 'RGBA' ('1', 'P' and 'PA' are "
        f"converted losslessly); convert the image first, e.g. pil_kmq.modes.to_storable(im), whose rules are "
        f"documented (Pillow's own convert('L') clips 16-bit values)"
    )


# EXIF tags that describe an image rather than lay out a TIFF: kept when EXIF comes from a
# TIFF's own tags, and what `kmq decode` gives a TIFF output as its own tags.
DESCRIPTIVE_TAGS = (0x010E, 0x010F, 0x0110, 0x0112, 0x011A, 0x011B, 0x0128, 0x0131, 0x0132, 0x013B, 0x8298)


def _metadata(im: Image.Image, info: dict[str, Any]) -> bytes:
    """The extension area: icc_profile, exif and xmp from the save options, else from im.info;
    EXIF, else from the image's own tags (a TIFF keeps orientation there, not in im.info)."""
    given = {key: info[key] for key in METADATA_CHUNKS if key in info}
    stored = check_metadata(given)  # a bad save option is the caller's ValueError
    # What the image brought along is kept where it is valid, else dropped with a warning:
    # a source file's odd metadata must not stop its pixels from being saved.
    found: dict[str, object] = {key: im.info[key] for key in METADATA_CHUNKS if key not in given and im.info.get(key) is not None}
    if "exif" not in given and "exif" not in found and im.format == "TIFF":
        found["exif"] = _descriptive_exif(im.getexif())
    for key, value in found.items():
        try:
            stored.update(check_metadata({key: value}))
        except Exception as error:  # noqa: BLE001 - Pillow's EXIF encoder raises struct.error, TypeError...
            warnings.warn(f"KMQ: the image's {key} could not be stored ({error}); saved without it", stacklevel=4)
    return pack_metadata(stored)


XMP_PNG_KEY = "XML:com.adobe.xmp"  # a PNG's XMP, which Pillow also gives as info["xmp"]
# A PNG's sRGB chunk, and the gAMA and cHRM that tools write beside it, say what KMQ's pixels
# are anyway (spec 4: sRGB unless an ICC profile says otherwise): nothing lost, nothing said.
SRGB_GAMMA = 0.45455
SRGB_CHROMATICITY = (0.3127, 0.329, 0.64, 0.33, 0.30, 0.60, 0.15, 0.06)
# A PNG's text chunks that a tool writes about itself (matplotlib's Software, ImageMagick's
# date:create ...), not a user's metadata.
_TOOL_TEXT = ("Software", "date:")


def _unkept(im: Image.Image) -> list[str]:
    """Names of the metadata in im.info a KMQ file will not hold (its chunks, 5.1, are the ICC
    profile, EXIF and XMP), to be saved without but not silently: dpi the exif chunk does not
    keep, a gamma or chromaticities other than sRGB's, a comment, and a PNG's own text chunks
    (XMP, its own chunk in KMQ, aside)."""
    info, names = im.info, []
    if info.get("dpi") is not None and _own_dpi(im):
        names.append("resolution (dpi)")
    srgb = info.get("srgb") is not None
    gamma, chromaticity = info.get("gamma"), info.get("chromaticity")
    if gamma is not None and not srgb and abs(float(gamma) - SRGB_GAMMA) > 5e-4:
        names.append(f"gamma {gamma}")
    if chromaticity is not None and not srgb and any(abs(float(a) - b) > 5e-4 for a, b in zip(chromaticity, SRGB_CHROMATICITY)):
        names.append("chromaticities")
    if info.get("comment"):
        names.append("comment")
    if im.format == "PNG":
        text = [key for key, value in info.items() if isinstance(value, str) and key != XMP_PNG_KEY and not key.startswith(_TOOL_TEXT)]
        if text:
            names.append("text " + ", ".join(map(repr, text)))
    return names


def _own_dpi(im: Image.Image) -> bool:
    """Whether im.info's dpi would be lost: not when the exif chunk keeps a resolution (a
    TIFF's tags go there, DESCRIPTIVE_TAGS, and a JPEG's EXIF may hold one); a JPEG's is its
    own only from its JFIF density (unit 1 or 2: else Pillow took the EXIF's, or made up 72),
    and an image with EXIF and no format (a copy, a conversion) cannot tell, so is not named."""
    if im.format == "TIFF" or _exif_resolution(im):
        return False
    if im.format == "JPEG" or "jfif_unit" in im.info:
        return im.info.get("jfif_unit") in (1, 2)
    return im.format is not None or "exif" not in im.info


def _exif_resolution(im: Image.Image) -> bool:
    """Whether the image's EXIF holds a resolution (XResolution); False for EXIF Pillow cannot read."""
    try:
        return 0x011A in im.getexif()
    except Exception:  # noqa: BLE001 - Pillow's EXIF parser raises struct.error, SyntaxError...
        return False


def _descriptive_exif(tags: Image.Exif) -> Image.Exif | None:
    exif = Image.Exif()
    for tag in DESCRIPTIVE_TAGS:
        if tag in tags:
            exif[tag] = tags[tag]
    return exif if len(exif) else None


@interrupts_kept
def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    info = im.encoderinfo
    # Every option is checked and all clustering done before the first byte is written.
    # Re-saving a KMQ image keeps its k by default: its colours then come back exactly.
    k = info.get("k")
    header = getattr(im, "kmq_header", None) if isinstance(im, KmqImageFile) else None
    if k is None and "psnr" not in info and header is not None:
        k = header.k
    compression = info.get("compression", DEFAULT_COMPRESSION)
    check_compression(compression)  # checked before any work
    extension = _metadata(im, info)
    if unkept := _unkept(im):
        warnings.warn(f"KMQ keeps no {', '.join(unkept)} (only the ICC profile, EXIF and XMP): saved without", stacklevel=4)
    pixels = _pixels_to_store(im)
    quantized = compress_image(pixels, k, info.get("seed", DEFAULT_SEED), info.get("psnr"), info.get("dither", False), info.get("psnr_loss"), compression)
    warn_if_not_near(len(quantized.codebook), compression, stacklevel=3)
    method, quantized = for_writing(quantized, compression)
    ImageFile._save(im, fp, [ImageFile._Tile(CODEC, (0, 0, *im.size), 0, (quantized, method, extension))])


class KmqEncoder(ImageFile.PyEncoder):
    """Writes a quantized image, handed over in the tile's args, as one KMQ file."""

    _pushes_fd = True

    def init(self, args: tuple[Any, ...]) -> None:
        self._quantized, self._method, self._extension = args

    def encode(self, bufsize: int) -> tuple[int, int, bytes]:
        indices, codebook = self._quantized
        data = b"".join(encode_parts(indices, codebook, self._method, self._extension, reuse=self._quantized))
        return len(data), 1, data


def register() -> None:
    """Register the KMQ format with Pillow; safe to call any number of times."""
    Image.register_open(FORMAT, KmqImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)
    Image.register_decoder(CODEC, KmqDecoder)
    Image.register_encoder(CODEC, KmqEncoder)
