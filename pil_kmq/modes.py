"""Explicit conversions to a mode KMQ stores, for images a user has (16-bit microscopy and
pathology scans, CMYK prints, float TIFFs), asked for with `kmq ... --convert`.

The Pillow plugin and the numpy API never convert lossily on their own: they raise
ValueError. Here each rule is fixed and documented (CONVERSIONS), never Pillow's clipping:
Pillow's own `convert("L")` of a 16-bit image clips every value above 255 to white.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageCms

from .plugin import storable

# Mode -> what --convert does with it (also the CLI's help and the README's table).
CONVERSIONS = {
    "I;16": "16-bit grey: scaled to 8-bit L, v × 255 / 65,535, rounded",
    "I": "32-bit integer grey: clipped to 0–65,535, then scaled as 16-bit",
    "F": "32-bit float grey: 0.0–1.0 scaled to 0–255 when every value is in 0–1, else clipped to 0–255",
    "CMYK": "to sRGB through its embedded ICC profile when it has one, else by Pillow's formula; the profile becomes sRGB",
    "YCbCr": "to RGB (Pillow's conversion, lossless up to rounding)",
    "HSV": "to RGB (Pillow's conversion, lossless up to rounding)",
    "LAB": "to sRGB through a CIELAB profile; the profile becomes sRGB",
    "RGBX": "to RGB (the padding channel dropped)",
}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def describe(mode: str) -> str | None:
    """What --convert does with this mode; None if it needs nothing or cannot be converted."""
    return CONVERSIONS.get("I;16" if mode in _SIXTEEN_BIT else mode)


def mode_hint(mode: str) -> str:
    """Why an image of this mode is not saved, and what to pass, in the CLI's terms."""
    rule = describe(mode)
    if rule is None:
        return f"mode {mode!r} cannot be stored as KMQ (it holds 8-bit L, LA, RGB and RGBA)"
    return f"mode {mode!r} is not stored as it is (KMQ holds 8-bit L, LA, RGB and RGBA); --convert converts it ({rule})"


def to_storable(image: Image.Image) -> Image.Image:
    """The image in a mode KMQ stores, by the rule of CONVERSIONS for its mode; the image
    itself when KMQ stores it as it is. ValueError for a mode with no rule."""
    mode = image.mode
    if storable(mode):
        return image
    if mode in _SIXTEEN_BIT or mode == "I":
        values = np.asarray(image).astype(np.int64)
        scaled = (np.clip(values, 0, 65_535) * 255 + 32_767) // 65_535
        return _with_info(Image.fromarray(scaled.astype(np.uint8), "L"), image)
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        finite = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0 else 1.0
        return _with_info(Image.fromarray(np.clip(np.rint(finite * scale), 0, 255).astype(np.uint8), "L"), image)
    if mode == "CMYK":
        return _cmyk_to_srgb(image)
    if mode == "LAB":
        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return _with_info(ImageCms.applyTransform(image, transform), image, srgb=True)  # type: ignore[arg-type]
    if mode in ("YCbCr", "HSV", "RGBX"):
        return _with_info(image.convert("RGB"), image)
    raise ValueError(f"mode {mode!r} has no conversion to a mode KMQ stores")


def _cmyk_to_srgb(image: Image.Image) -> Image.Image:
    profile = image.info.get("icc_profile")
    if profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            converted = None
        if converted is not None:
            return _with_info(converted, image, srgb=True)
    return _with_info(image.convert("RGB"), image, srgb=True)


def _with_info(converted: Image.Image, original: Image.Image, srgb: bool = False) -> Image.Image:
    """converted with the original's metadata; its colour profile replaced by sRGB's when the
    colours were moved into sRGB (the old profile would now describe them wrongly)."""
    converted.info = dict(original.info)
    if srgb:
        converted.info["icc_profile"] = srgb_profile()
    return converted


def srgb_profile() -> bytes:
    """lcms's sRGB profile, its creation date fixed (bytes 24-35 of the ICC header) so that the
    same image converts to the same bytes on any day."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[24:36] = bytes.fromhex("07d0 0001 0001 0000 0000 0000")  # 2000-01-01 00:00:00
    return bytes(profile)
