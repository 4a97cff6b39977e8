"""Small, spec-valid (or nearly valid) KMQ files built to cost a careless decoder gigabytes or
minutes: each has every checksum right, so the decoder's deeper rules are what meet it.

Used by the regression tests (in a subprocess with a memory cap) and by `measure.py`.
"""

from __future__ import annotations

import struct
import zlib

import zstandard

from pil_kmq.format import (
    METHOD_MINOR,
    Header,
    IndexCoding,
    StripMethod,
    bits_for_k,
    crc32,
    pack_crc,
    row_bytes,
)


def _file(width: int, height: int, channels: int, k: int, coding: IndexCoding, stream: bytes, extension: bytes = b"", minor: int = 1) -> bytes:
    header = Header(width, height, channels, k, bits_for_k(k), coding, len(stream), len(extension), version_minor=minor).pack()
    body = header + extension + bytes(k * channels) + stream
    return body + pack_crc(crc32(body))


ZSTD_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=19, write_content_size=True).compress(data)


def _strips(strips: list[bytes], strip_height: int) -> bytes:
    table = struct.pack(">I", strip_height) + b"".join(struct.pack(">QI", len(strip), crc32(strip)) for strip in strips)
    return table + b"".join(strips)


def one_strip_image(width: int = 9459, height: int = 9459, channels: int = 4, k: int = 257) -> bytes:
    """The whole image in one runs_zstd strip of one colour: ~1.5 kB for 89 megapixels."""
    pixels = width * height
    flags = bytearray(b"\xff" * ((pixels + 7) // 8))
    flags[0] = 0x7F  # f[0] = 0: the one literal
    if pixels % 8:
        flags[-1] = (0xFF << (8 - pixels % 8)) & 0xFF
    literal = bytes(1 if k <= 256 else 2)
    coded_flags = _zstd(bytes(flags))
    strip = bytes([StripMethod.RUNS_ZSTD]) + struct.pack(">Q", len(coded_flags)) + coded_flags + _zstd(literal)
    return _file(width, height, channels, k, IndexCoding.STRIPS, _strips([strip], height))


def one_rows_strip_image(width: int = 9459, height: int = 9459, channels: int = 4, k: int = 257, method: int = StripMethod.ROWS_ZSTD) -> bytes:
    """The whole image in one rows_zstd strip of one colour (version 1.3): index 0 packed at
    16 bits, ~10 kB for 89 megapixels; or in one byte_rows_zstd strip (`method` 6, version
    1.9), a byte or two an index; or in one med_rows_zstd strip (`method` 7, version 1.10, k <=
    256), a residual of 0 a pixel, which MED predicts as index 0 throughout."""
    content = bytes(height * row_bytes(width, bits_for_k(k), StripMethod(method)))
    strip = bytes([method]) + _zstd(content)
    return _file(width, height, channels, k, IndexCoding.STRIPS, _strips([strip], height), minor=METHOD_MINOR[StripMethod(method)])


def tall_rows_strip(height: int = 40_000_000, k: int = 2) -> bytes:
    """A 1-pixel-wide image in one rows_zstd strip: each row is a byte of which one bit is
    the index (8 values to unpack a pixel), the frame hand-made of RLE blocks (~1.3 kB)."""
    content = height * row_bytes(1, bits_for_k(k))
    frame = bytearray(ZSTD_FRAME_MAGIC) + bytes([2 << 6, (23 - 10) << 3]) + struct.pack("<I", content)  # 4-byte size, 8 MiB window
    left = content
    while left:
        size = min(left, 1 << 17)
        left -= size
        frame += struct.pack("<I", int(left == 0) | 1 << 1 | size << 3)[:3] + b"\0"  # an RLE block of zeros
    strip = bytes([StripMethod.ROWS_ZSTD]) + bytes(frame)
    return _file(1, height, 3, k, IndexCoding.STRIPS, _strips([strip], height), minor=3)


def stretch_rescans(width: int = 4096, height: int = 512) -> bytes:
    """One near_flat strip (version 1.8) whose flat rows alternate with rows of `0 0 1`: every
    third pixel there starts a flat stretch that stops after one pixel, so a decoder that
    scanned the row above for each stretch's length (up to 4,095 entries) would take
    thousands of steps a pixel instead of a few."""
    import numpy as np

    from pil_kmq import near

    indices = np.zeros((height, width), dtype=np.uint8)
    indices[1::2, 2::3] = 1
    codebook = np.array([[0, 0, 0], [255, 255, 255]], dtype=np.uint8)
    strip = bytes([StripMethod.NEAR_FLAT]) + near.encode_near(indices, near.Palette(codebook), stretches=True)
    header = Header(width, height, 3, 2, 1, IndexCoding.STRIPS, 4 + 12 + len(strip), 0, version_minor=8).pack()
    body = header + codebook.tobytes() + _strips([strip], height)
    return body + pack_crc(crc32(body))


def one_wide_row(width: int = 2**31 - 1, channels: int = 3) -> bytes:
    """k = 1: one row of `width` pixels in 52 bytes."""
    return blank_image(width, 1, channels)


def blank_image(width: int, height: int, channels: int = 3) -> bytes:
    """k = 1: an image of one colour, of any size, in about 52 bytes."""
    return _file(width, height, channels, 1, IndexCoding.NONE, b"", minor=0)


def many_tiny_strips(count: int = 70_000, width: int = 8) -> bytes:
    """`count` one-row raw strips (k = 256): the per-strip cost of a decoder, multiplied."""
    strips = [bytes([StripMethod.RAW]) + bytes((row + column) % 256 for column in range(width)) for row in range(count)]
    return _file(width, count, 3, 256, IndexCoding.STRIPS, _strips(strips, 1))


def huge_sizes() -> dict[str, bytes]:
    """Files whose u64/u32 sizes point far past their end (each checksum right)."""
    small = _file(4, 2, 3, 3, IndexCoding.NONE, b"\x90\x60", minor=0)
    files = {}
    header = Header(4, 2, 3, 3, 2, IndexCoding.NONE, 2, extension_length=2**32 - 1, version_minor=2).pack()
    files["extension_length"] = header + small[44:]
    header = Header(4, 2, 3, 3, 2, IndexCoding.STRIPS, 2**63, version_minor=1).pack()
    files["index_stream_length"] = header + bytes(9) + struct.pack(">I", 1) + bytes(40)
    strip = b"\x00\x24"
    table = struct.pack(">I", 2) + struct.pack(">QI", 2**62, crc32(strip))
    files["strip_length"] = _file(4, 2, 3, 3, IndexCoding.STRIPS, table + strip)
    flags_length = struct.pack(">Q", 2**63)
    strip = bytes([StripMethod.RUNS_ZLIB]) + flags_length + zlib.compress(b"\x00")
    files["flags_length"] = _file(4, 2, 3, 3, IndexCoding.STRIPS, _strips([strip], 2))
    return files


def bad_exif_chunk() -> bytes:
    """A 1 x 1 file whose exif chunk is a TIFF header and nothing else."""
    chunk = b"exif" + struct.pack(">I", 4) + b"II*\0"
    return _file(1, 1, 3, 1, IndexCoding.NONE, b"", chunk, minor=2)


# --- reading one of these files in a fresh process ------------------------------------------

READS = ("verify", "load", "parser", "decode_kmq", "read_rows(0, 1)", "iter_rows", "kmq info")


def _status(field: str) -> int:
    """A /proc/self/status figure in bytes (VmHWM: peak resident memory; VmSize: address space)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def read_once(data: bytes, path: str, read: str) -> None:
    """One read of the file, as a client makes it, with no pixel limit."""
    import io

    from PIL import Image, ImageFile

    import pil_kmq
    from pil_kmq import stream
    from pil_kmq.cli import main

    Image.MAX_IMAGE_PIXELS = None
    if read in ("verify", "load"):
        with Image.open(io.BytesIO(data)) as image:
            image.verify() if read == "verify" else image.load()
    elif read == "parser":
        parser = ImageFile.Parser()
        for start in range(0, len(data), 1000):
            parser.feed(data[start : start + 1000])
        parser.close().close()
    elif read == "decode_kmq":
        pil_kmq.decode_kmq(data, max_pixels=None)
    elif read == "read_rows(0, 1)":
        with stream.open_kmq(path, max_pixels=None) as reader:
            reader.read_rows(0, 1)
    elif read == "iter_rows":
        with stream.open_kmq(path, max_pixels=None) as reader:
            for _ in reader.iter_rows():
                pass
    elif read == "kmq info":
        main(["info", path])
    else:
        raise ValueError(read)


def probe(maker: str, arguments: list[int], read: str, path: str, cap: int | None) -> dict[str, object]:
    """Make the file, then read it once: peak memory above the baseline, CPU seconds, and the
    exception the read raised ("ok" if none). cap: bytes of address space the read may add."""
    import resource
    import time
    import warnings

    warnings.simplefilter("ignore")
    data = globals()[maker](*arguments)
    with open(path, "wb") as file:
        file.write(data)
    baseline = _status("VmHWM")
    if cap is not None:
        limit = _status("VmSize") + cap
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    start, outcome = time.process_time(), "ok"
    try:
        read_once(data, path, read)
    except BaseException as error:  # noqa: BLE001 - reported, not raised
        outcome = type(error).__name__
    return {"peak": _status("VmHWM") - baseline, "cpu": time.process_time() - start, "outcome": outcome, "size": len(data)}


if __name__ == "__main__":
    import json
    import sys

    # python fuzz/hostile.py MAKER '[ARGUMENTS]' READ PATH [CAP_BYTES]: one JSON line
    cap_argument = int(sys.argv[5]) if len(sys.argv) > 5 else None
    print(json.dumps(probe(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], cap_argument)))
