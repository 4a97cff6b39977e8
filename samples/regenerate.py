"""Rewrite the golden KMQ files and their expected pixels in samples/.

Writes the files that are missing; `--all` rewrites every one. Run --all only when the
bytes on disk are meant to change, together with spec/kmq.md:
    python samples/regenerate.py [--all]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageDraw, ImageFilter, ImageFont, PngImagePlugin

import pil_kmq  # noqa: F401  (registers KMQ)

HERE = Path(__file__).parent

# (golden file, source image, Pillow mode it is saved from, k, compression)
GOLDEN = [
    ("ihc-k2.kmq", "ihc.png", "RGB", 2, "none"),
    ("ihc-k16.kmq", "ihc.png", "RGB", 16, "none"),
    ("ihc-gray-k6.kmq", "ihc.png", "L", 6, "none"),
    ("kodim23-k1.kmq", "kodim23.png", "RGB", 1, "none"),
    ("kodim23-k16.kmq", "kodim23.png", "RGB", 16, "none"),
    ("kodim23-k256.kmq", "kodim23.png", "RGB", 256, "none"),
    ("kodim03-p12-k16.kmq", "kodim03-p12.png", "P", 16, "none"),
    ("ihc-k16-zstd.kmq", "ihc.png", "RGB", 16, "zstd"),
    ("ihc-k256-zlib.kmq", "ihc.png", "RGB", 256, "zlib"),
    ("ihc-gray-k6-zstd.kmq", "ihc.png", "L", 6, "zstd"),
    ("kodim03-p12-k16-zstd.kmq", "kodim03-p12.png", "P", 16, "zstd"),
    ("kodim23-k1000.kmq", "kodim23.png", "RGB", 1000, "none"),
    ("kodim23-k1000-zstd.kmq", "kodim23.png", "RGB", 1000, "zstd"),
    ("ihc-cutout-k16.kmq", "ihc-cutout.png", "RGBA", 16, "none"),
    ("ihc-cutout-k64-zstd.kmq", "ihc-cutout.png", "RGBA", 64, "zstd"),
    ("ihc-cutout-gray-k8.kmq", "ihc-cutout.png", "LA", 8, "none"),
    ("ihc-k16-metadata.kmq", "ihc.png", "RGB", 16, "zstd"),
    ("ihc-k2-zstd.kmq", "ihc.png", "RGB", 2, "zstd"),  # a segmentation: strip_method 3, rows_zstd
    ("ihc-cutout-gray-k3-zstd.kmq", "ihc-cutout.png", "LA", 3, "zstd"),  # rows_zstd, 2-bit packing
    # rows_zstd whose rows are whole bytes of indices (4 and 2 bits), k below what the bits hold
    ("kodim03-p12-k12-zstd.kmq", "kodim03-p12.png", "P", 12, "zstd"),
    ("labels-gray-k3-zstd.kmq", "labels.png", "L", 3, "zstd"),
    # a coded codebook (KMQ 1.5): a drawing at its exact colours, whose sorted entries step little
    ("legend-zstd.kmq", "legend.png", "RGB", 1024, "zstd"),
    # strip_method 4, near_rans (KMQ 1.4), which the writer keeps for a small strip where it is
    # shorter than near_flat: lossless; above 256 entries (KMQ 1.6: indices above 255, tokens of
    # octaves 8 and 9, a coded codebook); above 1,024 (KMQ 1.7: the order by index, octave 10)
    ("kodim03-p12-k16-near.kmq", "kodim03-p12.png", "P", 16, "near"),
    ("kodim23-k1000-near.kmq", "kodim23.png", "RGB", 1000, "near"),
    ("legend-near.kmq", "legend.png", "RGB", 1024, "near"),
    ("kodim23-k2000-near.kmq", "kodim23.png", "RGB", 2000, "near"),
    # strip_method 5, near_flat (KMQ 1.8), where the writer finds it shorter than near_rans:
    # label maps at their exact colours (lossless: 3 and 1 channels, and above 256 entries with
    # a coded codebook), and the cut-out's flat transparent background (4 channels)
    ("labels-flat.kmq", "labels.png", "RGB", 16, "near"),
    ("labels-gray-flat.kmq", "labels.png", "L", 16, "near"),
    ("labels300-flat.kmq", "labels300.png", "RGB", 512, "near"),
    ("ihc-cutout-k64-flat.kmq", "ihc-cutout.png", "RGBA", 64, "near"),
    # strip_method 6, byte_rows_zstd (KMQ 1.9), which near coding stores for antialiased text,
    # whose glyphs repeat at every place within a byte of packed rows; 2- and 4-bit indices, a
    # byte each (k below 256, so a reader checks each index)
    ("text-k4-bytes.kmq", "text.png", "RGB", 4, "near"),
    ("text-gray-k16-bytes.kmq", "text.png", "L", 16, "near"),
    # strip_method 7, med_rows_zstd (KMQ 1.10): a grayscale image's indices, its codebook sorted
    # by grey level, as residuals from the MED prediction: a photo's (k = 64; the indices take
    # residuals below 0 wrap to bytes from 0x80 up) and a label map's at its exact 8 greys (rows that repeat)
    ("ihc-gray-k64-med.kmq", "ihc.png", "L", 64, "zstd"),
    ("labels-gray-med.kmq", "labels.png", "L", 16, "zstd"),
]
# Files an earlier writer made, committed and never rewritten: where it wrote these near_rans
# strips (KMQ 1.4: 1, 3 and 4 channels, extra bits at k = 256), pil_kmq now writes near_flat,
# and a reader must still read them. (name, source, mode, k)
KEPT = [
    ("ihc-k16-near.kmq", "ihc.png", "RGB", 16),
    ("ihc-k256-near.kmq", "ihc.png", "RGB", 256),
    ("ihc-gray-k6-near.kmq", "ihc.png", "L", 6),
    ("ihc-cutout-k64-near.kmq", "ihc-cutout.png", "RGBA", 64),
]
# Golden files saved with metadata: an sRGB ICC profile, EXIF (orientation 6) and an XMP packet.
WITH_METADATA = {"ihc-k16-metadata.kmq"}
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'


def make_cutout() -> None:
    """ihc-cutout.png: the IHC slide with its bright background made transparent (a soft edge
    of partial alpha around the tissue), as a segmentation cut-out would be."""
    with Image.open(HERE / "ihc.png") as image:
        rgb = image.convert("RGB")
    luminance = np.asarray(rgb.convert("L").filter(ImageFilter.GaussianBlur(2))).astype(np.int32)
    alpha = np.clip((215 - luminance) * 8, 0, 255).astype(np.uint8)
    rgb.putalpha(Image.fromarray(alpha))
    rgb.save(HERE / "ihc-cutout.png", optimize=True)


def make_legend() -> None:
    """legend.png: a colour-bar legend (two gradients and antialiased labels), a drawing of a
    few hundred exact colours; made once and committed, as font rendering may change."""
    image = Image.new("RGB", (160, 64), (250, 248, 240))
    ramp = np.linspace((40, 60, 160), (230, 90, 40), 140).astype(np.uint8)
    image.paste(Image.fromarray(np.repeat(ramp[None], 12, axis=0)), (10, 8))
    ramp = np.linspace((20, 120, 60), (250, 220, 80), 140).astype(np.uint8)
    image.paste(Image.fromarray(np.repeat(ramp[None], 12, axis=0)), (10, 24))
    draw = ImageDraw.Draw(image)
    draw.text((10, 42), "0      0.5      1", fill=(30, 30, 90), font=ImageFont.load_default(size=13))
    image.save(HERE / "legend.png", optimize=True)


def make_text() -> None:
    """text.png: lines of antialiased text (Pillow's default FreeType font at 13 px) set word
    by word at whatever pixel each word ends on; made once and committed."""
    rng = np.random.default_rng(5)
    words = "a codebook of colours and one index a pixel: the rows of a page repeat its glyphs wherever they fall".split()
    image = Image.new("RGB", (360, 220), (252, 251, 246))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    for y in range(6, 220 - 13, 19):
        x = 8.0
        for word in rng.choice(words, 30):
            width = draw.textlength(word + " ", font=font)
            if x + width > 360 - 8:
                break
            draw.text((x, y), word, fill=(30, 30, 40), font=font)
            x += width
    image.save(HERE / "text.png", optimize=True)


def make_labels(name: str, regions: int, seed: int, size: tuple[int, int] = (320, 240)) -> None:
    """A label map (a segmentation's classes): each pixel the colour of the nearest of
    `regions` random seeds; made once and committed."""
    rng = np.random.default_rng(seed)
    width, height = size
    seeds = rng.integers(0, (height, width), (regions, 2))
    rows, columns = np.mgrid[0:height, 0:width]
    nearest = np.argmin((rows[..., None] - seeds[:, 0]) ** 2 + (columns[..., None] - seeds[:, 1]) ** 2, axis=2)
    palette = rng.permutation(np.unique(rng.integers(0, 256, (4 * regions, 3)), axis=0))[:regions].astype(np.uint8)
    if regions <= 8:  # few classes: distinct greys too, for the L golden
        palette = np.stack([np.linspace(20, 235, regions)] * 3, axis=1).astype(np.uint8)[rng.permutation(regions)]
        palette[:, 0] = rng.integers(0, 256, regions)  # coloured in RGB, distinct in L
    Image.fromarray(palette[nearest]).save(HERE / name, optimize=True)


def metadata() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to show
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return {"icc_profile": icc, "exif": exif.tobytes(), "xmp": XMP}


def png_metadata(info: dict[str, object]) -> dict[str, object]:
    """Save options that make an expected PNG carry a decoded golden's EXIF (eXIf) and XMP (an
    iTXt chunk, XML:com.adobe.xmp), as its ICC profile (iCCP) is carried anyway: a decoder
    written from the spec can then check all three against the PNG."""
    extra: dict[str, object] = {}
    if isinstance(info.get("exif"), bytes):
        extra["exif"] = info["exif"]
    if isinstance(info.get("xmp"), bytes):
        text = PngImagePlugin.PngInfo()
        text.add_itxt("XML:com.adobe.xmp", info["xmp"].decode("utf-8"))
        extra["pnginfo"] = text
    return extra


def expected_path(golden: str) -> Path:
    """The lossless PNG holding the pixels a golden file must decode to."""
    return HERE / "expected" / golden.replace(".kmq", ".png")


def main() -> None:
    (HERE / "expected").mkdir(exist_ok=True)
    if not (HERE / "ihc-cutout.png").exists():
        make_cutout()
    if not (HERE / "legend.png").exists():
        make_legend()
    if not (HERE / "labels.png").exists():
        make_labels("labels.png", 8, 1)
    if not (HERE / "text.png").exists():
        make_text()
    if not (HERE / "labels300.png").exists():
        make_labels("labels300.png", 300, 2, (960, 720))
    for golden, source, mode, k, compression in GOLDEN:
        if (HERE / golden).exists() and "--all" not in sys.argv:
            continue  # golden files change only on purpose: --all rewrites every one
        extra = metadata() if golden in WITH_METADATA else {}
        with Image.open(HERE / source) as image:
            image.convert(mode).save(HERE / golden, k=k, seed=0, compression=compression, **extra)
        with Image.open(HERE / golden) as decoded:
            decoded.save(expected_path(golden), optimize=True, **png_metadata(decoded.info))
        print(golden, (HERE / golden).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
