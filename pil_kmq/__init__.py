"""pil_kmq: KMQ, a k-means colour-quantized image format, as a Pillow plugin.

``import pil_kmq`` registers the "KMQ" format with Pillow; ``pil_kmq.register()`` does it
again explicitly (idempotent). The numpy API mirrors the article the format comes from.
"""

from __future__ import annotations

from . import modes, stream
from .api import (
    COMPRESSIONS,
    DEFAULT_K,
    SizeReport,
    compress_image,
    decode_kmq,
    encode_kmq,
    read_metadata,
    reconstruct_image,
    size_report,
)
from .format import Header, IndexCoding, KmqError
from .plugin import KmqImageFile, register
from .quantize import Quantized, psnr_for_mse

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_K",
    "Header",
    "IndexCoding",
    "KmqError",
    "KmqImageFile",
    "Quantized",
    "SizeReport",
    "compress_image",
    "decode_kmq",
    "encode_kmq",
    "modes",
    "psnr_for_mse",
    "read_metadata",
    "reconstruct_image",
    "register",
    "size_report",
    "stream",
]
__version__ = "1.7.0"

register()
