"""The held-out set: photos and graphics no parameter of pil_kmq was tuned on, measured as the
Kodak set is, every anchor in the same run.

Photos are the ones that ship inside installed packages (scikit-image, scikit-learn,
matplotlib); graphics are drawn here by a script (a chart, a text page, a UI screenshot, a
label map, pixel art, a map). Per image and K: MSE ÷ the seed article's scikit-learn
k-means (cached in cache/heldout_seed.json), save time ÷ (Pillow's median cut + PNG save)
and ÷ (libimagequant + PNG save), file bytes ÷ PNG-8 (`optimize=True`) and ÷ WebP lossless
(`method=6`) holding the very same pixels, and load time ÷ PNG-8 open + convert; the same
for compression="near"; and both files' bytes ÷ JPEG XL lossless (`effort=9`). Times are the
best of --repeat saves and of at least 15 loads (20 at the exact colour count), KMQ and its
anchors taken in turns.

    pip install '.[bench]'
    python benchmarks/heldout.py            # per-image rows, then per-K and per-kind means
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import seed_method
from common import CACHE, best_times, figure_image, geomean, jxl_lossless, mse
from PIL import Image, ImageDraw, ImageFont

import pil_kmq  # registers KMQ; decode_kmq below

KS = (16, 64, 256)
SEED_CACHE = CACHE / "heldout_seed.json"


# --- the images -------------------------------------------------------------------------------


def photos() -> dict[str, Image.Image]:
    """Colour photos shipped inside installed packages."""
    import matplotlib
    import skimage.data
    import sklearn.datasets

    found = {f"skimage-{name}": Image.fromarray(getattr(skimage.data, name)()) for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")}
    found["skimage-motorcycle"] = Image.fromarray(skimage.data.stereo_motorcycle()[0])
    china, flower = sklearn.datasets.load_sample_images().images
    found["sklearn-china"], found["sklearn-flower"] = Image.fromarray(china), Image.fromarray(flower)
    found["mpl-grace-hopper"] = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    return {name: image.convert("RGB") for name, image in found.items()}


def graphics() -> dict[str, Image.Image]:
    """Palette graphics drawn here: what PNG-8 and GIF are used for."""
    return {"chart": _chart(), "text-page": _text_page(), "ui-screenshot": _screenshot(), "label-map": _label_map(), "pixel-art": _pixel_art(), "map": _map()}


def _chart() -> Image.Image:
    def draw(figure: object) -> None:
        axes = figure.subplots(1, 2)  # type: ignore[attr-defined]
        x = np.linspace(0, 10, 200)
        for shift in range(4):
            axes[0].plot(x, np.sin(x + shift) * (1 + shift / 3), label=f"series {shift}")
        axes[0].legend()
        axes[0].grid(True)
        axes[1].bar(range(12), np.random.default_rng(1).integers(3, 20, 12), color=[f"C{i % 10}" for i in range(12)])
        axes[1].set_title("monthly totals")

    return figure_image(draw, (9, 5))


def _text_page() -> Image.Image:
    image = Image.new("RGB", (850, 1100), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=17)
    words = ("vector quantization maps each pixel to one of k representative colours chosen by "
             "k-means clustering so that the image is stored as a codebook and indices").split()
    rng = np.random.default_rng(2)
    for line in range(44):
        text = " ".join(rng.choice(words, 11))
        draw.text((60, 50 + line * 23), text, fill=(20, 20, 20) if line % 9 else (30, 60, 160), font=font)
    return image


def _screenshot() -> Image.Image:
    image = Image.new("RGB", (1024, 700), (236, 238, 241))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=15)
    draw.rectangle((0, 0, 1024, 36), fill=(44, 62, 80))
    draw.text((14, 9), "KMQ viewer - slide-0042.kmq", fill="white", font=font)
    draw.rectangle((0, 36, 220, 700), fill=(250, 250, 252))
    for row in range(14):
        fill = (210, 228, 250) if row == 3 else (250, 250, 252)
        draw.rectangle((6, 46 + row * 34, 214, 74 + row * 34), fill=fill)
        draw.text((16, 52 + row * 34), f"slide-{row:04d}.kmq", fill=(40, 40, 40), font=font)
    for column in range(3):
        for row in range(2):
            x, y = 240 + column * 260, 60 + row * 300
            draw.rounded_rectangle((x, y, x + 240, y + 280), 8, fill="white", outline=(200, 204, 210))
            thumbnail = np.linspace((180 - 30 * column, 120 + 40 * row, 150), (60, 40 + 50 * column, 90 + 60 * row), 220)
            image.paste(Image.fromarray(np.repeat(thumbnail[None].astype(np.uint8), 190, axis=0)), (x + 10, y + 10))
            draw.text((x + 12, y + 214), f"K = {16 << (column + row)}", fill=(30, 30, 30), font=font)
            draw.rounded_rectangle((x + 150, y + 240, x + 228, y + 268), 6, fill=(52, 120, 246))
            draw.text((x + 168, y + 245), "Open", fill="white", font=font)
    return image


def _label_map() -> Image.Image:
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(3)
    seeds = rng.random((30, 2)) * (600, 800)
    rows, columns = np.mgrid[0:600, 0:800]
    labels = cKDTree(seeds).query(np.stack([rows.ravel(), columns.ravel()], axis=1))[1].reshape(600, 800)
    palette = rng.integers(0, 256, (30, 3), dtype=np.uint8)
    return Image.fromarray(palette[labels])


def _pixel_art() -> Image.Image:
    rng = np.random.default_rng(4)
    palette = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    sprite = rng.integers(0, 12, (24, 32))
    sprite = np.where(rng.random((24, 32)) < 0.5, np.roll(sprite, 1, axis=1), sprite)  # some runs
    return Image.fromarray(palette[sprite]).resize((512, 384), Image.Resampling.NEAREST)


def _map() -> Image.Image:
    import matplotlib

    data = np.load(Path(matplotlib.get_data_path()) / "sample_data" / "topobathy.npz")["topo"]

    def draw(figure: object) -> None:
        axes = figure.add_axes((0, 0, 1, 1))  # type: ignore[attr-defined]
        axes.contourf(data, levels=14, cmap="terrain")
        axes.contour(data, levels=14, colors="k", linewidths=0.5)
        axes.set_axis_off()

    return figure_image(draw, (8, 6))


# --- measurements -----------------------------------------------------------------------------


def _saved(save: Callable[[io.BytesIO], None]) -> bytes:
    buffer = io.BytesIO()
    save(buffer)
    return buffer.getvalue()


def _loads(kmq: bytes, png: bytes, near: bytes, repeat: int) -> list[float]:
    """Best load times of the KMQ file, the PNG (opened and converted to RGB) and the near file, in turns."""
    return best_times((
        lambda: Image.open(io.BytesIO(kmq)).load(),
        lambda: Image.open(io.BytesIO(png)).convert("RGB"),
        lambda: Image.open(io.BytesIO(near)).load(),
    ), repeat)


def measure(name: str, image: Image.Image, k: int, seeds: dict[str, dict[str, float]], repeat: int) -> dict[str, float]:
    import imagequant

    pixels = np.asarray(image)
    kmq = _saved(lambda fp: image.save(fp, "KMQ", k=k))
    near = _saved(lambda fp: image.save(fp, "KMQ", k=k, compression="near"))  # the same pixels
    kmq_seconds, median_cut, liq = best_times((
        lambda: image.save(io.BytesIO(), "KMQ", k=k),
        lambda: image.quantize(k, method=Image.Quantize.MEDIANCUT).save(io.BytesIO(), "PNG"),
        lambda: imagequant.quantize_pil_image(image, dithering_level=0.0, max_colors=k).save(io.BytesIO(), "PNG"),
    ), repeat)
    with Image.open(io.BytesIO(kmq)) as opened:
        decoded = opened.convert("RGB")
    header, (indices, codebook) = pil_kmq.decode_kmq(kmq)
    paletted = Image.fromarray(indices.astype(np.uint8), "P") if header.k <= 256 else None
    if paletted is not None:
        paletted.putpalette(codebook.tobytes())
    png8 = _saved(lambda fp: paletted.save(fp, "PNG", optimize=True)) if paletted is not None else b""
    webp = _saved(lambda fp: decoded.save(fp, "WEBP", lossless=True, quality=100, method=6))
    jxl = jxl_lossless(decoded)
    key = f"{name}/{k}"
    if key not in seeds:
        seeds[key] = {"mse": mse(pixels.reshape(-1, 3), seed_method.seed_method(pixels.reshape(-1, 3), k))}
        SEED_CACHE.write_text(json.dumps(seeds, indent=1, sort_keys=True))
    load_kmq, load_png, load_near = _loads(kmq, png8, near, max(repeat, 15))
    kmq_mse, seed_mse = mse(pixels, np.asarray(decoded)), seeds[key]["mse"]
    return {
        "mse_ratio": 1.0 if kmq_mse == seed_mse == 0 else kmq_mse / max(seed_mse, 1e-9),  # both exact: 1
        "save_vs_median_cut": kmq_seconds / median_cut,
        "save_vs_libimagequant": kmq_seconds / liq,
        "bytes_vs_png8": len(kmq) / len(png8),
        "bytes_vs_webp": len(kmq) / len(webp),
        "load_vs_png8": load_kmq / load_png,
        "near_vs_png8": len(near) / len(png8),
        "near_vs_webp": len(near) / len(webp),
        "near_load_vs_png8": load_near / load_png,
        "bytes_vs_jxl": len(kmq) / len(jxl),
        "near_vs_jxl": len(near) / len(jxl),
        "stored_k": header.k,
    }


COLUMNS = (
    "mse_ratio", "save_vs_median_cut", "save_vs_libimagequant", "bytes_vs_png8", "bytes_vs_webp", "load_vs_png8", "near_vs_png8", "near_vs_webp", "near_load_vs_png8",
    "bytes_vs_jxl", "near_vs_jxl",
)
TITLES = (
    "MSE ÷ seed", "save ÷ median cut + PNG", "save ÷ libimagequant + PNG", "bytes ÷ PNG-8", "bytes ÷ WebP-LL", "load ÷ PNG-8",
    "near: bytes ÷ PNG-8", "near: bytes ÷ WebP-LL", "near: load ÷ PNG-8", "bytes ÷ JXL-LL", "near: bytes ÷ JXL-LL",
)


def exact_rows(images: dict[str, Image.Image], repeat: int) -> None:
    """Graphics stored losslessly, k = their number of colours: bytes against WebP lossless
    and PNG-8 (optimize=True; oxipng level 4 too), load time against PNG-8's."""
    print("\nGraphics at their exact colour count (lossless), geometric mean last:\n")
    print("| image | size | colours | KMQ bytes | ÷ WebP-LL | ÷ PNG-8 (PNG-24 above 256 colours) | ÷ the same + oxipng | load ÷ that PNG | near: ÷ WebP-LL | near: ÷ PNG + oxipng | near: load ÷ PNG | ÷ JXL-LL | near: ÷ JXL-LL |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for name, image in images.items():
        size, row = _exact_row(image, repeat)
        ratios.append(row)
        colours = len(image.getcolors(1 << 24) or ())
        print(f"| {name} | {image.width}x{image.height} | {colours} | {size:,} | " + " | ".join(f"{value:.3f}" for value in row) + " |", flush=True)
    means = " | ".join(f"**{geomean(column):.3f}** ({max(column):.3f})" for column in zip(*ratios))
    print(f"| **geometric mean** (worst) | | | | {means} |")


def _exact_row(image: Image.Image, repeat: int) -> tuple[int, tuple[float, ...]]:
    """KMQ bytes, then its bytes ÷ WebP lossless, ÷ PNG, ÷ PNG + oxipng, and load ÷ PNG's;
    then those of compression="near" (÷ WebP, ÷ PNG + oxipng, load); then both ÷ JPEG XL lossless."""
    import oxipng

    colours = len(image.getcolors(1 << 24) or ())
    kmq = _saved(lambda fp: image.save(fp, "KMQ", k=colours))
    near = _saved(lambda fp: image.save(fp, "KMQ", k=colours, compression="near"))
    webp = _saved(lambda fp: image.save(fp, "WEBP", lossless=True, quality=100, method=6))
    jxl = jxl_lossless(image)
    _, (indices, codebook) = pil_kmq.decode_kmq(kmq)
    if colours <= 256:
        paletted = Image.fromarray(indices.astype(np.uint8), "P")
        paletted.putpalette(codebook.tobytes())
    else:  # more than PNG-8 holds: PNG-24
        paletted = image
    assert paletted.convert("RGB").tobytes() == image.tobytes()
    png8 = _saved(lambda fp: paletted.save(fp, "PNG", optimize=True))
    squeezed = oxipng.optimize_from_memory(png8, level=4)
    load_kmq, load_png, load_near = _loads(kmq, png8, near, max(repeat, 20))
    ours = (len(kmq) / len(webp), len(kmq) / len(png8), len(kmq) / len(squeezed), load_kmq / load_png)
    return len(kmq), (*ours, len(near) / len(webp), len(near) / len(squeezed), load_near / load_png, len(kmq) / len(jxl), len(near) / len(jxl))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--exact-only", action="store_true", help="only the graphics at their exact colour count")
    args = parser.parse_args()
    if args.exact_only:
        exact_rows(graphics(), args.repeat)
        return
    CACHE.mkdir(exist_ok=True)
    seeds = json.loads(SEED_CACHE.read_text()) if SEED_CACHE.exists() else {}
    sets = {"photo": photos(), "graphic": graphics()}
    rows: list[tuple[str, str, int, dict[str, float]]] = []
    print("| kind | image | size | K | stored K | " + " | ".join(TITLES) + " |")
    print("|---|---|---|---|---|" + "---|" * len(TITLES))
    for kind, images in sets.items():
        for name, image in images.items():
            for k in KS:
                found = measure(name, image, k, seeds, args.repeat)
                rows.append((kind, name, k, found))
                values = " | ".join(f"{found[column]:.3f}" for column in COLUMNS)
                print(f"| {kind} | {name} | {image.width}x{image.height} | {k} | {found['stored_k']} | {values} |", flush=True)
    print("\nGeometric mean (worst image), per kind and K:\n")
    print("| kind | K | " + " | ".join(TITLES) + " |")
    print("|---|---|" + "---|" * len(TITLES))
    for kind in sets:
        for k in KS:
            chosen = [found for row_kind, _, row_k, found in rows if row_kind == kind and row_k == k]
            cells = " | ".join(f"{geomean(f[c] for f in chosen):.3f} ({max(f[c] for f in chosen):.3f})" for c in COLUMNS)
            print(f"| {kind} | {k} | {cells} |")
    exact_rows(sets["graphic"], args.repeat)


if __name__ == "__main__":
    main()
