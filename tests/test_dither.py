"""Floyd–Steinberg onto a codebook: valid indices, local means kept, exact when nothing
is to diffuse, alpha classes kept, the wavefront making the serial loop's choices."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable

import numpy as np
import pytest
from conftest import SAMPLES, kmq_bytes
from PIL import Image

import pil_kmq
from pil_kmq.dither import _pillow_dither, _wavefront_dither, floyd_steinberg
from pil_kmq.quantize import nearest_index, quantize

Dither = Callable[[np.ndarray, np.ndarray], np.ndarray]
# The two diffusion paths, called directly (floyd_steinberg first looks colours up).
PATHS: dict[str, Dither] = {"pillow": _pillow_dither, "numpy": _wavefront_dither}
SHARES = ((0, 1, 7 / 16), (1, -1, 3 / 16), (1, 0, 5 / 16), (1, 1, 1 / 16))


def assert_serial_floyd_steinberg(
    image: np.ndarray, codebook: np.ndarray, indices: np.ndarray
) -> None:
    """Replay the textbook loop in raster order (float64) with these choices: each must
    be a nearest entry (ties either way) of the value the loop carries to its pixel."""
    height, width, channels = image.shape
    alpha = channels in (2, 4)
    colour = channels - alpha
    work = image[:, :, :colour].astype(np.float64)
    entries = codebook.astype(np.float64)
    if alpha:  # the class coordinate: 0 transparent, 1024 partial, 2048 opaque
        entries = np.column_stack([entries, 1024.0 * alpha_class(codebook[:, -1])])
    for y in range(height):
        for x in range(width):
            value = np.clip(work[y, x], 0, 255)
            point = value
            if alpha:
                opacity = image[y, x, -1]
                point = np.concatenate(
                    [value, [opacity, 1024.0 * alpha_class(opacity)]]
                )
            distance = np.sqrt(((entries - point) ** 2).sum(axis=1))
            chosen = indices[y, x]
            assert distance[chosen] <= distance.min() + 1e-3, (y, x)
            if alpha and image[y, x, -1] == 0:
                continue
            error = value - codebook[chosen, :colour]
            for down, right, weight in SHARES:
                if y + down < height and 0 <= x + right < width:
                    work[y + down, x + right] += error * weight


def alpha_class(opacity: np.ndarray | np.uint8) -> np.ndarray:
    """0 transparent, 1 partial, 2 opaque."""
    return np.where(opacity == 0, 0, np.where(opacity == 255, 2, 1))


def block_means_rmse(image: np.ndarray, other: np.ndarray, block: int = 8) -> float:
    height = image.shape[0] // block * block
    width = image.shape[1] // block * block

    def means(array: np.ndarray) -> np.ndarray:
        array = array[:height, :width].astype(np.float64)
        shape = (height // block, block, width // block, block, -1)
        return array.reshape(shape).mean(axis=(1, 3))

    return float(np.sqrt(((means(image) - means(other)) ** 2).mean()))


def nearest_colours(image: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    pixels = image.reshape(-1, image.shape[2])
    return codebook[nearest_index(pixels, codebook)].reshape(image.shape)


def with_alpha_bands(image: np.ndarray) -> np.ndarray:
    """The image with alpha: bands transparent, partial (1..254) and opaque."""
    height, width, _ = image.shape
    column = np.arange(width)
    opacity = np.full((height, width), 255, dtype=np.uint8)
    opacity[:, column < width // 3] = 0
    partial = (column >= width // 3) & (column < 2 * width // 3)
    opacity[:, partial] = 1 + np.arange(height, dtype=np.uint8)[:, None] * 253 // height
    return np.dstack([image, opacity])


def grey_ramp() -> np.ndarray:
    """64 x 256, grey = column."""
    return np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (64, 256, 1))


def colour_ramp() -> np.ndarray:
    """64 x 256: red rises and green falls along a row, blue rises down a column."""
    x, y = np.arange(256)[None, :], np.arange(64)[:, None] * 4
    return np.stack(np.broadcast_arrays(x, 255 - x, y), axis=2).astype(np.uint8)


def corners(channels: int) -> np.ndarray:
    """The 2**channels corners of the colour cube."""
    return np.array(list(itertools.product((0, 255), repeat=channels)), dtype=np.uint8)


def spanning_codebook(image: np.ndarray, k: int) -> np.ndarray:
    """k-means colours plus the cube's corners: every colour is inside the codebook's
    hull, so local means are reachable (k-means alone leaves the extremes outside)."""
    return np.concatenate([quantize(image, k).codebook, corners(image.shape[2])])


def with_opacities(colours: np.ndarray, opacities: tuple[int, ...]) -> np.ndarray:
    """Each colour at each opacity, as entries with alpha."""
    alpha = np.repeat(np.array(opacities, dtype=np.uint8), len(colours))[:, None]
    return np.hstack([np.tile(colours, (len(opacities), 1)), alpha])


RGB_CUBE_CORNERS = corners(3)
GREY_QUARTERS = np.array([[0], [85], [170], [255]], dtype=np.uint8)


@pytest.fixture(scope="module")
def parrot_rgb(parrot: Image.Image) -> np.ndarray:
    return np.asarray(parrot)


@pytest.fixture(scope="module")
def ihc_rgb(ihc: Image.Image) -> np.ndarray:
    return np.asarray(ihc)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [1, 2, 16, 256, 257, 1000])
def test_indices_are_below_k_with_uint8_up_to_256_else_uint16(
    parrot_rgb: np.ndarray, channels: int, k: int
) -> None:
    image = {
        1: parrot_rgb[:, :, :1],
        2: with_alpha_bands(parrot_rgb[:, :, :1]),
        3: parrot_rgb,
        4: with_alpha_bands(parrot_rgb),
    }[channels]
    # Random entries: large errors to diffuse, and duplicates among 1-channel ones.
    codebook = np.random.default_rng(k).integers(0, 256, (k, channels)).astype(np.uint8)
    if channels in (2, 4):
        codebook[:, -1] = np.random.default_rng(k).choice([0, 90, 255], k)
    indices = floyd_steinberg(image, codebook)
    assert indices.shape == image.shape[:2]
    assert indices.dtype == (np.uint8 if k <= 256 else np.uint16)
    assert int(indices.max()) < k


@pytest.mark.parametrize("path", PATHS)
def test_k_1_maps_every_pixel_to_entry_0(ihc_rgb: np.ndarray, path: str) -> None:
    """Pillow pads its palette to 256 entries: a padding pick must never leak out."""
    codebook = np.array([[250, 3, 128]], dtype=np.uint8)
    indices = PATHS[path](ihc_rgb, codebook)
    assert indices.dtype == np.uint8 and indices.shape == ihc_rgb.shape[:2]
    assert not indices.any()
    rgba_codebook = np.array([[1, 2, 3, 4]], dtype=np.uint8)
    assert not floyd_steinberg(with_alpha_bands(ihc_rgb), rgba_codebook).any()


@pytest.mark.parametrize("path", PATHS)
def test_pillow_palette_padding_never_escapes(ihc_rgb: np.ndarray, path: str) -> None:
    """Entries far from a dark image, where black padding would be the nearest."""
    codebook = np.array([[255, 255, 0], [0, 255, 255], [255, 0, 255]], dtype=np.uint8)
    indices = PATHS[path](ihc_rgb // 4, codebook)  # a dark image
    assert int(indices.max()) < len(codebook)


@pytest.mark.parametrize(
    ("path", "image", "codebook"),
    [
        ("pillow", grey_ramp(), GREY_QUARTERS),
        ("pillow", colour_ramp(), RGB_CUBE_CORNERS),
        ("numpy", grey_ramp(), GREY_QUARTERS),
        ("numpy", colour_ramp(), RGB_CUBE_CORNERS),
    ],
)
def test_gradient_keeps_block_means_far_better_than_nearest_colour(
    path: str, image: np.ndarray, codebook: np.ndarray
) -> None:
    dithered = codebook[PATHS[path](image, codebook)]
    nearest_error = block_means_rmse(nearest_colours(image, codebook), image)
    dithered_error = block_means_rmse(dithered, image)
    assert nearest_error > 20  # quantization bands
    assert dithered_error < 0.1 * nearest_error  # measured: 0.05 to 0.06 x


def test_public_function_dithers_ramps_on_both_paths() -> None:
    """RGB with k <= 256 (Pillow) and RGBA (numpy), opaque: the same local means."""
    image, codebook = colour_ramp(), RGB_CUBE_CORNERS
    opaque = np.dstack([image, np.full(image.shape[:2], 255, dtype=np.uint8)])
    opaque_codebook = np.column_stack([codebook, np.full(8, 255, dtype=np.uint8)])
    nearest_error = block_means_rmse(nearest_colours(image, codebook), image)
    dithered = codebook[floyd_steinberg(image, codebook)]
    assert block_means_rmse(dithered, image) < 0.1 * nearest_error
    dithered = opaque_codebook[floyd_steinberg(opaque, opaque_codebook)]
    assert (dithered[:, :, 3] == 255).all()
    assert block_means_rmse(dithered[:, :, :3], image) < 0.1 * nearest_error


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("sample", ["parrot_rgb", "ihc_rgb"])
def test_real_images_keep_block_means_better_than_nearest_colour(
    path: str, sample: str, request: pytest.FixtureRequest
) -> None:
    image = request.getfixturevalue(sample)
    codebook = spanning_codebook(image, 8)
    dithered_error = block_means_rmse(codebook[PATHS[path](image, codebook)], image)
    nearest_error = block_means_rmse(nearest_colours(image, codebook), image)
    assert dithered_error < 0.7 * nearest_error  # measured: 0.52 to 0.59 x


@pytest.mark.parametrize("path", PATHS)
def test_image_of_well_separated_codebook_colours_comes_back_exactly(
    parrot_rgb: np.ndarray, path: str
) -> None:
    """No error to diffuse on either path (Pillow's lookup is exact for these)."""
    codebook = quantize(parrot_rgb, 16).codebook
    image = nearest_colours(parrot_rgb, codebook)
    assert np.array_equal(codebook[PATHS[path](image, codebook)], image)


EVERY_GREY = np.arange(256, dtype=np.uint8)[:, None]


@pytest.mark.parametrize(
    ("image", "codebook"),
    [
        # Every grey: Pillow's ditherer alone looks 1 up as 0 (its cache cell's corner).
        pytest.param(grey_ramp(), EVERY_GREY, id="every-grey"),
        pytest.param(
            grey_ramp() // 2 * 2, EVERY_GREY[::2].repeat(2, axis=0), id="duplicates"
        ),
        pytest.param(
            colour_ramp(), np.unique(colour_ramp().reshape(-1, 3), axis=0), id="k-16384"
        ),
    ],
)
def test_image_of_codebook_colours_comes_back_exactly(
    image: np.ndarray, codebook: np.ndarray
) -> None:
    indices = floyd_steinberg(image, codebook)
    assert np.array_equal(codebook[indices], image)
    assert np.array_equal(codebook[_wavefront_dither(image, codebook)], image)


def test_image_of_codebook_colours_comes_back_exactly_with_alpha(
    parrot_rgb: np.ndarray,
) -> None:
    image = with_alpha_bands(parrot_rgb)
    codebook = np.unique(image.reshape(-1, 4), axis=0)
    assert len(codebook) > 256
    assert np.array_equal(codebook[floyd_steinberg(image, codebook)], image)
    assert np.array_equal(codebook[_wavefront_dither(image, codebook)], image)


@pytest.mark.parametrize("path", PATHS)
def test_duplicate_entries_change_nothing(ihc_rgb: np.ndarray, path: str) -> None:
    codebook = quantize(ihc_rgb, 16).codebook
    doubled = np.concatenate([codebook, codebook[::-1], codebook[:3]])
    indices = PATHS[path](ihc_rgb, doubled)
    assert int(indices.max()) < len(doubled)
    assert np.array_equal(doubled[indices], codebook[PATHS[path](ihc_rgb, codebook)])


def test_grey_goes_through_pillow_as_rgb_and_stays_grey(ihc: Image.Image) -> None:
    """L is dithered as RGB with grey entries (Pillow's L -> P ignores the palette)."""
    grey = np.asarray(ihc.convert("L"))[:, :, None]
    codebook = spanning_codebook(grey, 6)
    indices = floyd_steinberg(grey, codebook)
    assert indices.dtype == np.uint8 and int(indices.max()) < len(codebook)
    rgb_codebook = np.repeat(codebook, 3, axis=1)
    assert np.array_equal(
        indices, floyd_steinberg(grey.repeat(3, axis=2), rgb_codebook)
    )
    nearest_error = block_means_rmse(nearest_colours(grey, codebook), grey)
    assert block_means_rmse(codebook[indices], grey) < 0.7 * nearest_error


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(9, 13), (1, 23), (23, 1), (12, 4), (1, 1)])
def test_wavefront_makes_the_serial_choices(
    channels: int, shape: tuple[int, int]
) -> None:
    rng = np.random.default_rng(channels * 100 + shape[0])
    image = rng.integers(0, 256, (*shape, channels)).astype(np.uint8)
    codebook = rng.integers(0, 256, (29, channels)).astype(np.uint8)
    if channels in (2, 4):
        image[:, :, -1] = rng.choice([0, 40, 200, 255], shape)
        codebook[:, -1] = rng.choice([0, 100, 255], len(codebook))
    assert_serial_floyd_steinberg(image, codebook, _wavefront_dither(image, codebook))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", [(1, 200), (200, 1)])
def test_one_pixel_wide_images(
    parrot_rgb: np.ndarray, path: str, shape: tuple[int, int]
) -> None:
    image = parrot_rgb.reshape(-1, 3)[:200].reshape(*shape, 3)
    codebook = quantize(parrot_rgb, 4).codebook
    indices = PATHS[path](image, codebook)
    assert indices.shape == shape and indices.dtype == np.uint8
    assert int(indices.max()) < len(codebook)


@pytest.mark.parametrize("channels", [2, 4])
def test_alpha_classes_are_respected(parrot_rgb: np.ndarray, channels: int) -> None:
    colours = parrot_rgb[:, :, : channels - 1]
    image = with_alpha_bands(colours)
    rgb_codebook = spanning_codebook(colours, 8)
    # Each colour transparent, half and opaque: every class has entries.
    codebook = with_opacities(rgb_codebook, (0, 128, 255))
    dithered = codebook[floyd_steinberg(image, codebook)]
    chosen, opacity = dithered[:, :, -1], image[:, :, -1]
    assert (chosen[opacity == 0] == 0).all()
    assert (chosen[opacity == 255] == 255).all()
    assert (chosen[(opacity > 0) & (opacity < 255)] == 128).all()
    # Opaque pixels are dithered: their block means are kept.
    opaque = colours[:, (opacity == 255).all(axis=0)]
    dithered_error = block_means_rmse(dithered[:, -opaque.shape[1] :, :-1], opaque)
    nearest_error = block_means_rmse(nearest_colours(opaque, rgb_codebook), opaque)
    assert dithered_error < 0.7 * nearest_error


def test_alpha_without_some_classes_takes_the_nearest_class(
    parrot_rgb: np.ndarray,
) -> None:
    image = with_alpha_bands(parrot_rgb)
    opacity = image[:, :, -1]
    colours = quantize(parrot_rgb, 4).codebook
    # Opaque and transparent entries only: partial pixels take either, by distance.
    codebook = with_opacities(colours, (0, 255))
    chosen = codebook[floyd_steinberg(image, codebook), -1]
    assert (chosen[opacity == 0] == 0).all() and (chosen[opacity == 255] == 255).all()
    partial = (opacity > 0) & (opacity < 255)
    assert (chosen[partial & (opacity < 100)] == 0).all()
    assert (chosen[partial & (opacity > 160)] == 255).all()
    # Partial and opaque entries: transparent pixels take the partial ones.
    codebook = with_opacities(colours, (7, 255))
    chosen = codebook[floyd_steinberg(image, codebook), -1]
    assert (chosen[opacity == 0] == 7).all() and (chosen[opacity == 255] == 255).all()


def test_no_error_leaves_transparent_pixels() -> None:
    """Transparent pixels far from the alpha-0 entry: opaque neighbours stay exact."""
    codebook = np.array(
        [[0, 0, 0, 0], [10, 200, 30, 255], [200, 10, 90, 255]], np.uint8
    )
    rng = np.random.default_rng(7)
    image = codebook[rng.integers(1, 3, (40, 50))]
    transparent = rng.random((40, 50)) < 0.3
    image[transparent] = [255, 255, 255, 0]
    chosen = floyd_steinberg(image, codebook)
    assert (chosen[transparent] == 0).all()
    assert np.array_equal(codebook[chosen][~transparent], image[~transparent])


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_results_are_deterministic(ihc_rgb: np.ndarray, channels: int) -> None:
    image = ihc_rgb[:, :, :channels] if channels < 4 else with_alpha_bands(ihc_rgb)
    codebook = quantize(image, 300 if channels == 3 else 12).codebook
    first = floyd_steinberg(image, codebook)
    assert np.array_equal(first, floyd_steinberg(image.copy(), codebook.copy()))


def test_largest_codebook_gives_uint16_indices(parrot_rgb: np.ndarray) -> None:
    codebook = np.random.default_rng(0).integers(0, 256, (65536, 3)).astype(np.uint8)
    indices = floyd_steinberg(parrot_rgb[:40, :40], codebook)
    assert indices.dtype == np.uint16 and int(indices.max()) < 65536
    assert int(indices.max()) > 256


def test_non_contiguous_input(ihc_rgb: np.ndarray) -> None:
    codebook = quantize(ihc_rgb, 16).codebook
    view = ihc_rgb[::2, ::-3]
    indices = floyd_steinberg(view, codebook)
    assert np.array_equal(indices, floyd_steinberg(view.copy(), codebook))


def test_empty_image() -> None:
    image, codebook = np.zeros((0, 5, 3), np.uint8), np.zeros((300, 3), np.uint8)
    indices = floyd_steinberg(image, codebook)
    assert indices.shape == (0, 5) and indices.dtype == np.uint16


@pytest.mark.parametrize(
    ("image", "codebook"),
    [
        (np.zeros((4, 4, 3), dtype=np.uint16), np.zeros((2, 3), dtype=np.uint8)),
        (np.zeros((4, 4), dtype=np.uint8), np.zeros((2, 1), dtype=np.uint8)),
        (np.zeros((4, 4, 5), dtype=np.uint8), np.zeros((2, 5), dtype=np.uint8)),
        (np.zeros((4, 4, 3), dtype=np.uint8), np.zeros((2, 4), dtype=np.uint8)),
        (np.zeros((4, 4, 3), dtype=np.uint8), np.zeros((2, 3), dtype=np.int64)),
        (np.zeros((4, 4, 3), dtype=np.uint8), np.zeros((0, 3), dtype=np.uint8)),
        (np.zeros((4, 4, 3), dtype=np.uint8), np.zeros((65537, 3), dtype=np.uint8)),
    ],
)
def test_bad_arrays_raise_valueerror(image: np.ndarray, codebook: np.ndarray) -> None:
    with pytest.raises(ValueError, match="image|codebook"):
        floyd_steinberg(image, codebook)


# The save option: dither=True maps onto the same k-means codebook by error diffusion.


def _ramp_image() -> Image.Image:
    ramp = np.tile(np.linspace(0, 255, 256).astype(np.uint8), (64, 1))
    return Image.fromarray(np.dstack([ramp, ramp // 2, 255 - ramp]))  # a line through colour space


def _block_rmse(original: np.ndarray, result: np.ndarray) -> float:
    def blocks(a: np.ndarray) -> np.ndarray:
        h, w = a.shape[0] // 8 * 8, a.shape[1] // 8 * 8
        return a[:h, :w].astype(np.float64).reshape(h // 8, 8, w // 8, 8, -1).mean(axis=(1, 3))

    return float(np.sqrt(((blocks(original) - blocks(result)) ** 2).mean()))


@pytest.mark.parametrize(("k", "mode"), [(8, "RGB"), (8, "L"), (8, "RGBA"), (8, "LA")])
def test_dither_save_option_removes_banding_with_the_same_codebook(k: int, mode: str) -> None:
    """Inside the codebook's hull (the ramp's ends lie outside k-means centroids' reach), local
    means follow the ramp far better dithered; and dithering only re-maps, using no new colour."""
    image = _ramp_image().convert(mode)
    if mode in ("RGBA", "LA"):
        image.putalpha(255)
    plain, dithered = (kmq_bytes(image, k=k, dither=flag) for flag in (False, True))
    with Image.open(io.BytesIO(plain)) as a, Image.open(io.BytesIO(dithered)) as b:
        inside = slice(64, 192)
        original = np.asarray(image)[:, inside]
        assert _block_rmse(original, np.asarray(b)[:, inside]) < 0.5 * _block_rmse(original, np.asarray(a)[:, inside])
        assert set(map(tuple, np.asarray(b).reshape(-1, len(mode)))) <= set(map(tuple, np.asarray(a.convert(mode)).reshape(-1, len(mode)))) | set(
            map(tuple, pil_kmq.decode_kmq(plain)[1].codebook)
        )


def test_dither_keeps_alpha_classes_exact() -> None:
    with Image.open(SAMPLES / "ihc-cutout.png") as cutout:
        original = np.asarray(cutout)
        with Image.open(io.BytesIO(kmq_bytes(cutout, k=16, dither=True))) as result:
            alpha = np.asarray(result)[..., 3]
    assert (alpha[original[..., 3] == 0] == 0).all() and (alpha[original[..., 3] == 255] == 255).all()


def test_dither_is_lossless_when_colours_fit(palette_image: Image.Image) -> None:
    with Image.open(io.BytesIO(kmq_bytes(palette_image, k=16, dither=True))) as result:
        assert result.tobytes() == palette_image.convert("RGB").tobytes()


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_dither_option_raises_valueerror(parrot: Image.Image, value: object) -> None:
    with pytest.raises(ValueError, match="dither must be True or False"):
        kmq_bytes(parrot, k=4, dither=value)
