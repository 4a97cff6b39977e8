"""The `kmq` command line: encode, decode and inspect KMQ files; convert many, compare Ks.

Errors print one line on stderr and exit non-zero (2 for usage errors); outputs are written
to a temporary file beside the target and renamed into place, so an existing file is never
left half written.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from PIL import Image
from tqdm import tqdm

from . import __version__, batch, figure
from .api import (
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    DEFAULT_K,
    DEFAULT_SEED,
    check_k,
    check_seed,
    size_report,
)
from .atomic import SameFileError, write_atomic
from .batch import save_options
from .coding import STRIP_HEAD_SIZE, iter_table, parse_strip_height
from .format import (
    HEADER_SIZE,
    MAGIC,
    Header,
    IndexCoding,
    KmqError,
    StripMethod,
    crc32,
    parse_header,
    unpack_crc,
)
from .jobs import caused_by_interrupt
from .modes import CONVERSIONS, describe, mode_hint, to_storable
from .plugin import DESCRIPTIVE_TAGS, FORMAT, XMP_PNG_KEY, storable

if TYPE_CHECKING:
    from distributed import Client

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM
EXIT_CODES = (
    "exit status: 0 done; 1 a file failed (unreadable, corrupt or truncated input, an output that cannot be "
    "written or that is the input); 2 usage error (a bad option or argument, an output name no writer takes); "
    "130 interrupted (143 terminated by SIGTERM)"
)


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, timeout): stopped as Ctrl-C stops the command, outputs whole or absent,
    a pool's workers stopped with it."""


def _terminate(signum: int, frame: object) -> NoReturn:
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises Terminated while the command runs (in the main thread only: a signal
    handler cannot be set elsewhere); Python's default would end the process on the spot."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --width: a panel this wide is 4 x a 4K screen's width already; 100,000 took the process past
# the machine's memory (each figure holds several panels, each as tall as the image scales).
MAX_FIGURE_PANEL_WIDTH = 16384
DEBUG_VARIABLE = "KMQ_DEBUG"  # set: an unexpected error shows its traceback


class CliError(Exception):
    """A failure to report as one line, without a traceback."""


class UsageError(CliError):
    """Options that do not go together, found after parsing: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line: `kmq: error: ...`."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"kmq: error: {message} (see kmq --help)\n")


def _seed_option(text: str) -> int:
    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seed must be an int from 0 to {2**32 - 1}, not {text!r}"
        ) from None


def _k_option(text: str) -> int:
    try:
        return check_k(int(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            str(error)
            if text.strip().lstrip("-").isdigit()
            else f"k must be an int, not {text!r}"
        ) from None


def _psnr_option(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(
            f"psnr must be a positive number of decibels, not {text!r}"
        )
    return value


def _loss_option(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"psnr-loss must be a number of decibels from 0 up, not {text!r}")
    return value


def _positive_int(name: str, most: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"{name} must be a positive int, not {text!r}"
            )
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"{name} must be at most {most:,}, not {text!r}")
        return value

    return parse


def _add_convert_option(parser: argparse.ArgumentParser) -> None:
    rules = "; ".join(f"{mode}: {rule}" for mode, rule in CONVERSIONS.items())
    parser.add_argument(
        "--convert",
        action="store_true",
        help=f"convert images of modes KMQ does not store (default: refuse them): {rules}",
    )


def _add_save_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed",
        type=_seed_option,
        default=DEFAULT_SEED,
        help=f"random seed; same seed, same bytes (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--compression",
        choices=sorted(COMPRESSIONS),
        default=DEFAULT_COMPRESSION,
        help=f"index stream coding (default {DEFAULT_COMPRESSION}: zstd, or near for a drawing where that is far smaller and for --psnr unless estimated larger; near: the smallest files, k <= 4096, slower loads; none: the bit-packed stream of the article)",
    )


def _build_parser(prog: str = "kmq") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="K-means colour-quantized images (KMQ).", epilog=EXIT_CODES)
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    encode = commands.add_parser(
        "encode", help="encode an image (any format Pillow reads) as KMQ"
    )
    encode.add_argument("input", type=Path, help="image to encode")
    encode.add_argument("output", type=Path, help="KMQ file to write ('-' for stdout)")
    _add_quality_options(encode)
    _add_save_options(encode)
    encode.add_argument(
        "-q", "--quiet", action="store_true", help="do not print the size table"
    )
    encode.add_argument("--force", action="store_true", help="allow OUTPUT to be INPUT itself, replacing it")
    encode.add_argument(
        "--format",
        choices=[FORMAT],
        help="say that OUTPUT is meant to hold KMQ though its extension names another format (no warning)",
    )
    _add_convert_option(encode)
    encode.set_defaults(run=_encode)

    decode = commands.add_parser(
        "decode", help="decode a KMQ file to any format Pillow writes"
    )
    decode.add_argument("input", type=Path, help="KMQ file")
    decode.add_argument(
        "output",
        type=Path,
        help="image to write ('-' for stdout); its extension picks the format",
    )
    decode.add_argument(
        "--format",
        help="output format for Pillow (e.g. PNG), when the extension does not say",
    )
    decode.add_argument("--force", action="store_true", help="allow OUTPUT to be INPUT itself, replacing it")
    decode.set_defaults(run=_decode)

    info = commands.add_parser(
        "info", help="print header fields and the size table of KMQ files"
    )
    info.add_argument("files", type=Path, nargs="+", metavar="FILE")
    info.set_defaults(run=_info)

    convert = commands.add_parser(
        "convert",
        help="convert image files and directories of images to KMQ files, in parallel",
    )
    convert.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="PATH",
        help="image files, and directories searched recursively for images",
    )
    convert.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory for the KMQ files, created if missing",
    )
    _add_quality_options(convert)
    _add_save_options(convert)
    where = convert.add_mutually_exclusive_group()
    where.add_argument(
        "-j",
        "--jobs",
        type=_positive_int("jobs"),
        metavar="N",
        help="files converted at once, each in its own process (default: the CPU count)",
    )
    where.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="convert on a Dask cluster, one task per file: its scheduler's address "
        "(tcp://host:8786; the workers need the same file system) or 'local' to start one "
        f"here; needs {batch.DASK_EXTRA}",
    )
    convert.add_argument(
        "--dask-workers",
        type=_positive_int("dask-workers"),
        metavar="N",
        help="worker processes of --dask local (default: the CPU count)",
    )
    convert.add_argument(
        "--force",
        action="store_true",
        help="overwrite existing outputs (default: skip their inputs)",
    )
    _add_convert_option(convert)
    convert.add_argument(
        "--skip-if-larger",
        action="store_true",
        help="write no KMQ file that is not smaller than its input",
    )
    convert.add_argument(
        "--keep-suffix",
        action="store_true",
        help="name each output by its input's whole name, x.png.kmq (x.png and x.jpg then both convert)",
    )
    convert.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar, skip notes or summary table; errors only",
    )
    convert.set_defaults(run=_convert)

    compare = commands.add_parser(
        "compare",
        help="draw an image beside its KMQ reconstructions, captioned with sizes and PSNR",
    )
    compare.add_argument("input", type=Path, metavar="IMAGE", help="image to compare")
    ks = " ".join(map(str, figure.ARTICLE_KS))
    compare.add_argument(
        "-k",
        type=_k_option,
        nargs="+",
        default=list(figure.ARTICLE_KS),
        metavar="K",
        help=f"one reconstruction per K (default {ks}, the article's)",
    )
    compare.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="figure to write ('-' for stdout); its extension picks the format",
    )
    compare.add_argument(
        "--format",
        help="output format for Pillow (e.g. PNG), when the extension does not say",
    )
    compare.add_argument(
        "--dither",
        action="store_true",
        default=None,
        help="dither the image to its colours",
    )
    compare.add_argument(
        "--psnr-loss",
        type=_loss_option,
        metavar="DB",
        help="panels with rate-optimized indices: PSNR at most DB decibels below nearest colours'",
    )
    _add_save_options(compare)
    _add_convert_option(compare)
    compare.add_argument(
        "--width",
        type=_positive_int("width", MAX_FIGURE_PANEL_WIDTH),
        metavar="PX",
        help=f"width of each panel (default: the image's, up to {figure.MAX_PANEL_WIDTH})",
    )
    compare.add_argument(
        "-q", "--quiet", action="store_true", help="do not print the table of figures"
    )
    compare.set_defaults(run=_compare)
    return parser


def _write_output(target: Path, data: bytes, source: Path, force: bool | None) -> None:
    """Write data to target: '-' is stdout; anything else all or nothing (write_atomic), never
    over the input it was made from unless force (None: the command has no --force)."""
    if str(target) == "-":
        _write_stdout(data)
        return
    if os.path.isfile(target) and not os.access(target, os.W_OK):
        raise CliError(f"{target}: is read-only; not replaced (as cp would not)")
    try:
        write_atomic(target, data, inputs=() if force else [source])
    except SameFileError:
        raise CliError(f"{target}: is the input file{'' if force is None else '; pass --force to replace it'}") from None
    except OSError as error:
        raise CliError(f"{target}: cannot write: {error.strerror or error}") from None


def _write_stdout(data: bytes) -> None:
    """All of data to stdout, or an error: a pipe whose reader left takes part of a write and
    Python's buffered writer then returns the part's length without raising, which looked
    like success (exit 0 with most of a BMP unwritten)."""
    stream = sys.stdout.buffer if sys.stdout is not None else None
    if stream is None:
        raise CliError("-: standard output is closed")
    if stream.isatty():
        raise CliError("-: standard output is a terminal; redirect it to a file or a pipe")
    view = memoryview(data)
    try:
        while view:
            written = stream.write(view)
            if not written:
                raise BrokenPipeError
            view = view[written:]
        stream.flush()
    except BrokenPipeError:
        raise  # main's: exit 1, quietly
    except OSError as error:
        raise CliError(f"-: cannot write to standard output: {error.strerror or error}") from None


def _not_stdin(path: Path) -> None:
    if str(path) == "-":
        raise CliError("-: reading an image from standard input is not supported; give its path")


def _open_image(path: Path, convert: bool | None = None) -> Image.Image:
    """The image at path, loaded. convert: None keeps its mode; False refuses a mode KMQ does
    not store, with a hint; True converts it by the rules of pil_kmq.modes."""
    _not_stdin(path)
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except Image.UnidentifiedImageError:
        raise CliError(f"{path}: not an image format Pillow can read") from None
    except OSError as error:
        raise CliError(f"{path}: {error.strerror if error.errno and error.strerror else error}") from None
    except (SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise CliError(f"{path}: {error}") from None
    if convert is None or storable(image.mode):
        return image
    if not convert or describe(image.mode) is None:
        raise CliError(f"{path}: {mode_hint(image.mode)}")
    return to_storable(image)


def _add_quality_options(parser: argparse.ArgumentParser) -> None:
    """-k or --psnr (exclusive), and --dither."""
    quality = parser.add_mutually_exclusive_group()
    quality.add_argument(
        "-k",
        type=_k_option,
        help=f"colours in the codebook, 1 to 65,536 (default {DEFAULT_K})",
    )
    quality.add_argument(
        "--psnr",
        type=_psnr_option,
        metavar="DB",
        help="instead of -k: the smallest file whose PSNR reaches DB decibels",
    )
    parser.add_argument(
        "--psnr-loss",
        type=_loss_option,
        metavar="DB",
        help="with -k: smaller files from pixels taking a neighbour's colour, "
        "PSNR at most DB decibels below the nearest colours' (default 0: off)",
    )
    parser.add_argument(
        "--dither",
        action="store_true",
        default=None,
        help="Floyd-Steinberg dithering onto the k-means colours (against banding)",
    )


def _check_loss(args: argparse.Namespace) -> None:
    """--psnr-loss trades error for size at a given -k; --psnr and --dither choose otherwise."""
    if args.psnr_loss and getattr(args, "psnr", None) is not None:
        raise UsageError("--psnr-loss is for -k without --dither: --psnr already makes the smallest file")
    if args.psnr_loss and args.dither:
        raise UsageError("--psnr-loss is for -k without --dither: both choose each pixel's index, so give one")


def _encode(args: argparse.Namespace) -> None:
    _check_loss(args)
    image = _open_image(args.input, args.convert)
    encoded = io.BytesIO()
    options = save_options(args.k, args.psnr, args.dither, args.seed, args.compression, args.psnr_loss)
    what = f"psnr {args.psnr:g} dB" if args.psnr is not None else f"k = {options['k']}"
    if args.psnr_loss:
        what += f", psnr-loss {args.psnr_loss:g} dB"
    try:
        with _working(f"{args.input.name}: {what}", args.quiet):
            image.save(encoded, FORMAT, **options)
    except ValueError as error:
        raise CliError(f"{args.input}: {error}") from None
    frames = getattr(image, "n_frames", 1)
    if frames > 1:  # KMQ holds one image, as PNG does: Pillow saves the first frame
        print(f"kmq: note: {args.input}: the first of its {frames} frames (KMQ holds one image)", file=sys.stderr)
    data = encoded.getvalue()
    _write_output(args.output, data, args.input, args.force)
    _warn_on_foreign_extension(args.output, args.format)
    if not args.quiet:
        header = parse_header(data[:HEADER_SIZE])
        report = (
            sys.stderr if str(args.output) == "-" else sys.stdout
        )  # keep stdout for the file
        print(f"{args.input} -> {args.output}  k={header.k}", file=report)
        print(size_report(header), file=report)


def _warn_on_foreign_extension(output: Path, explicit: str | None) -> None:
    """A KMQ file written under a name that says PNG, JPEG... surprises whoever opens it."""
    named = Image.registered_extensions().get(output.suffix.lower())
    if str(output) != "-" and explicit is None and named not in (None, FORMAT):
        print(f"kmq: warning: {output}: KMQ written to a name whose extension means {named} (--format KMQ says it is meant)", file=sys.stderr)


@contextlib.contextmanager
def _working(description: str, quiet: bool) -> Iterator[None]:
    """A ticking progress line on a terminal while one long step runs (silent with -q or when
    stderr is not a terminal): clustering a large image or searching k for a PSNR takes seconds."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    done = threading.Event()
    with tqdm(desc=f"kmq: {description}", bar_format="{desc} {elapsed}", file=sys.stderr, leave=False) as line:

        def tick() -> None:
            while not done.wait(0.5):
                line.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


def _output_format(output: Path, explicit: str | None) -> str:
    """The Pillow format to write output in: explicit, else by its extension; CliError if none."""
    extension = output.suffix.lower()
    output_format = (
        explicit or Image.registered_extensions().get(extension) or ""
    ).upper()
    Image.init()  # every plugin, so that Image.SAVE lists every writable format
    if output_format not in Image.SAVE:
        if explicit:
            raise UsageError(f"--format {explicit}: not a format Pillow can write (e.g. PNG, WEBP, TIFF)")
        if str(output) == "-":
            raise UsageError("writing to stdout ('-') needs --format, e.g. --format PNG")
        raise UsageError(f"{output}: Pillow cannot write files with extension {extension or '(none)'!r}; pass --format")
    named = Image.registered_extensions().get(extension)
    if explicit and named and named != output_format and str(output) != "-":
        print(f"kmq: warning: {output}: {output_format} written to a name whose extension means {named}", file=sys.stderr)
    return output_format


def _decode(args: argparse.Namespace) -> None:
    output_format = _output_format(args.output, args.format)
    image = _open_image(args.input)
    if image.format != FORMAT:
        raise CliError(f"{args.input}: not a KMQ file (it is {image.format})")
    metadata: dict[str, bytes] = {key: image.info[key] for key in ("icc_profile", "exif", "xmp") if key in image.info}
    lost = [_METADATA_NAMES[key] for key in metadata if output_format not in _KEEP_METADATA]
    if lost:
        print(f"kmq: warning: {args.output}: {output_format} keeps no {', '.join(lost)}: written without", file=sys.stderr)
    _save_as(image, args.output, output_format, args.input, args.force, check=_alpha_kept, **metadata_options(output_format, metadata))


# Writers that keep the ICC profile, EXIF and XMP as metadata_options gives them.
_KEEP_METADATA = frozenset({"PNG", "JPEG", "WEBP", "TIFF", FORMAT})
_METADATA_NAMES = {"icc_profile": "ICC profile", "exif": "EXIF", "xmp": "XMP"}


def _alpha_kept(image: Image.Image, data: bytes, output_format: str) -> str | None:
    """Why the written file loses the image's transparency (None if it does not): read back, as
    a user's viewer would, it has no alpha (Pillow reads its own 32-bit BMP as RGB) or only
    all-or-nothing alpha where the image has partial (GIF). Each file Pillow can read back is
    checked, not a list of formats; a lossy format's changed alpha is the loss asked for."""
    if "A" not in image.getbands() or image.getchannel("A").getextrema() == (255, 255):
        return None  # no transparency to lose
    try:
        with Image.open(io.BytesIO(data)) as back:
            back.load()
            if back.size != image.size:  # ICO, ICNS: written at sizes of their own
                return None
            if "A" not in back.getbands():
                back = back.convert("RGBA") if back.mode == "P" and "transparency" in back.info else back
            if "A" not in back.getbands():
                return "no alpha channel"
            levels = back.getchannel("A").histogram()
            if sum(levels[1:255]) == 0 and sum(image.getchannel("A").histogram()[1:255]):
                return "its transparency is all or nothing"  # a lossy format's alpha changes as its colours do
    except Exception:  # noqa: BLE001 - a file Pillow writes but cannot read back: nothing to compare
        return None
    return None


XMP_TIFF_TAG = 700


def metadata_options(output_format: str, metadata: dict[str, bytes]) -> dict[str, object]:
    """Save options that make Pillow's writer for output_format keep the ICC profile, EXIF and
    XMP: JPEG and WebP take them as they are; PNG takes XMP as an iTXt chunk, TIFF as tag
    700 and EXIF as its own tags; other writers get what they accept."""
    options: dict[str, object] = dict(metadata)
    xmp = metadata.get("xmp") if output_format in ("PNG", "TIFF") else None
    if output_format == "PNG" and xmp:
        from PIL import PngImagePlugin

        del options["xmp"]
        text = PngImagePlugin.PngInfo()
        text.add_itxt(XMP_PNG_KEY, bytes(xmp).decode("utf-8", "replace"))
        options["pnginfo"] = text
    if output_format == "TIFF":
        from PIL import TiffImagePlugin

        tags = TiffImagePlugin.ImageFileDirectory_v2()
        exif = metadata.get("exif")
        options.pop("exif", None)
        options.pop("xmp", None)
        if exif:
            loaded = Image.Exif()
            try:
                loaded.load(bytes(exif))
            except Exception as error:  # noqa: BLE001 - Pillow's EXIF parser raises struct.error, KeyError...
                warnings.warn(f"the EXIF data could not be read ({error}); the TIFF is written without it", stacklevel=2)
            for tag in DESCRIPTIVE_TAGS:
                if tag in loaded:
                    tags[tag] = loaded[tag]
        if xmp:
            tags[XMP_TIFF_TAG] = bytes(xmp)
            tags.tagtype[XMP_TIFF_TAG] = 1  # BYTE
        if len(tags):
            options["tiffinfo"] = tags
    return options


def _save_as(
    image: Image.Image, output: Path, output_format: str, source: Path, force: bool | None,
    check: Callable[[Image.Image, bytes, str], str | None] | None = None, **options: object,
) -> None:
    """Save image in output_format, then write it to output (atomically; '-' is stdout). `check`
    says why the encoded file does not hold the image (None: it does): then nothing is written."""
    encoded = io.BytesIO()
    try:
        image.save(encoded, output_format, **options)
    except (OSError, ValueError) as error:
        raise CliError(f"{output}: cannot write {output_format}: {error}") from None
    except Exception as error:  # noqa: BLE001 - Pillow's writers raise struct.error, TypeError... on odd metadata
        if not options:
            raise CliError(f"{output}: cannot write {output_format}: {error}") from None
        print(f"kmq: warning: {output}: {output_format} could not take the {', '.join(options)} ({error}); written without", file=sys.stderr)
        _save_as(image, output, output_format, source, force, check)
        return
    problem = check(image, encoded.getvalue(), output_format) if check else None
    if problem:
        raise CliError(f"{output}: {output_format} would lose this {image.mode} image's transparency ({problem}); write PNG, WebP or TIFF")
    _write_output(output, encoded.getvalue(), source, force)


def _read_header(path: Path) -> tuple[Header, int]:
    """The header and the file's size."""
    _not_stdin(path)
    try:
        with open(path, "rb") as file:
            head = file.read(HEADER_SIZE)
            if not head.startswith(MAGIC):
                raise CliError(f"{path}: not a KMQ file")
            return parse_header(head), os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except OSError as error:
        raise CliError(f"{path}: {error.strerror if error.errno and error.strerror else error}") from None


def _strip_summary(path: Path, header: Header, file_size: int) -> str:
    """How many strips and how each is stored, read from each strip's first byte; the table is
    read in chunks, so memory stays bounded however many strips there are."""
    methods: dict[str, int] = {}
    strip_height = 0
    try:
        with open(path, "rb") as file:

            def read_at(offset: int, size: int) -> bytes:
                if offset + size > file_size:
                    raise KmqError("truncated KMQ file: the strip table is cut short")
                file.seek(offset)
                return file.read(size)

            fields = (header.height, header.width, header.bits_per_index, header.index_stream_length)
            strip_height = parse_strip_height(read_at(header.index_stream_offset, STRIP_HEAD_SIZE), header.height, header.index_stream_length)
            for _, offset, _, _ in iter_table(read_at, header.index_stream_offset, fields, 0, header.height, True):
                file.seek(header.index_stream_offset + offset)
                code = file.read(1)
                name = StripMethod(code[0]).name.lower() if code and code[0] in StripMethod._value2member_map_ else "invalid"
                methods[name] = methods.get(name, 0) + 1
    except OSError as error:
        raise CliError(f"{path}: {error}") from None
    stored = ", ".join(f"{count} {name}" for name, count in methods.items())
    return f"  {sum(methods.values())} strips of {strip_height} rows: {stored}"


def _info(args: argparse.Namespace) -> None:
    failures = []
    for path in args.files:
        try:
            header, file_size = _read_header(path)
            summary = _strip_summary(path, header, file_size) if header.index_coding == IndexCoding.STRIPS and file_size >= header.file_length else None
        except CliError as error:
            print(f"kmq: error: {error}", file=sys.stderr)
            failures.append(path)
            continue
        print(
            f"{path}: KMQ {header.version_major}.{header.version_minor}, {header.width}x{header.height} {header.mode}, "
            f"k={header.k}, bits_per_index={header.bits_per_index}, index_coding={header.index_coding.name.lower()}, "
            f"{f'codebook_stream_length={header.codebook_stream_length}, ' if header.codebook_stream_length else ''}"
            f"index_stream_length={header.index_stream_length}, file {file_size} bytes"
        )
        if file_size < header.file_length:
            print(f"kmq: warning: {path}: file is truncated, the header declares {header.file_length} bytes", file=sys.stderr)
            failures.append(path)
        elif not _crc_or_error(path, header):
            print(f"kmq: error: {path}: file checksum mismatch: the file is corrupt past its header", file=sys.stderr)
            failures.append(path)
        if summary is not None:
            print(summary)
        if header.extension_length and file_size >= header.file_length:
            print(f"  metadata: {_chunk_summary(path, header)}")
        coded_bits = header.index_stream_length * 8
        print(
            f"  index stream: {header.index_stream_length:,} bytes, {coded_bits / (header.width * header.height):.3f} bits per pixel"
        )
        print(size_report(header))
    if failures:
        raise CliError(f"{len(failures)} of {len(args.files)} files could not be read, or are truncated or corrupt")


_CHUNK_NAMES = {b"iccp": "ICC profile", b"exif": "EXIF", b"xmpp": "XMP"}
_MOST_CHUNKS_LISTED = 16  # a file may hold millions of empty chunks


def _chunk_summary(path: Path, header: Header) -> str:
    """The extension area's chunks and their sizes, read a chunk header at a time (its data
    skipped): memory stays bounded whatever extension_length says."""
    found = []
    with open(path, "rb") as file:
        at, end = HEADER_SIZE, HEADER_SIZE + header.extension_length
        while at + 8 <= end:
            if len(found) == _MOST_CHUNKS_LISTED:
                return ", ".join([*found, "and more"])
            file.seek(at)
            head = file.read(8)
            tag, length = head[:4], int.from_bytes(head[4:], "big")
            name = _CHUNK_NAMES.get(tag, f"chunk {tag.decode('latin-1')!r}")
            found.append(f"{name} ({length:,} bytes)")
            at += 8 + length
    return ", ".join(found) if at == end else ", ".join([*found, "and a broken chunk table"])


def _crc_or_error(path: Path, header: Header) -> bool:
    """_file_crc_matches, with a read error printed as this file's (the listing goes on)."""
    try:
        return _file_crc_matches(path, header)
    except CliError as error:
        print(f"kmq: error: {error}", file=sys.stderr)
        return False


def _file_crc_matches(path: Path, header: Header) -> bool:
    """Whether file_crc matches the file's bytes before it (read a MiB at a time: memory stays
    bounded whatever the file's size)."""
    end = header.file_length - 4
    value = 0
    try:
        with open(path, "rb") as file:
            at = 0
            while at < end:
                chunk = file.read(min(1 << 20, end - at))
                if not chunk:
                    return False
                value, at = crc32(chunk, value), at + len(chunk)
            return unpack_crc(file.read(4)) == value
    except (OSError, ValueError) as error:
        raise CliError(f"{path}: {error}") from None


def _convert(args: argparse.Namespace) -> None:
    _check_loss(args)
    if args.dask_workers is not None and args.dask != batch.LOCAL:
        raise UsageError("--dask-workers is for --dask local")
    options = batch.save_options(
        k=args.k,
        psnr=args.psnr,
        dither=args.dither,
        seed=args.seed,
        compression=args.compression,
        psnr_loss=args.psnr_loss,
    )
    try:
        jobs = batch.plan_jobs(
            args.paths,
            args.output,
            options,
            force=args.force,
            skip_if_larger=args.skip_if_larger,
            convert=args.convert,
            keep_suffix=args.keep_suffix,
        )
    except batch.PlanError as error:
        raise CliError(str(error)) from None
    if not jobs:
        raise CliError("no images found to convert")
    workers = min(args.dask_workers or os.cpu_count() or 1, len(jobs))
    with _dask_client(args.dask, workers) as client:
        try:
            args.output.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CliError(
                f"{args.output}: is a file, not a directory for the outputs"
                if args.output.exists() and not args.output.is_dir()
                else f"{args.output}: cannot create the output directory: {error.strerror or error}"
            ) from None
        with tqdm(
            total=len(jobs),
            unit="file",
            file=sys.stderr,
            leave=False,
            disable=args.quiet or not sys.stderr.isatty(),
        ) as bar:

            def report(result: batch.Result) -> None:
                if result.status == batch.Status.FAILED:
                    bar.write(
                        f"kmq: error: {result.input}: {result.message}", file=sys.stderr
                    )
                elif result.status == batch.Status.SKIPPED and not args.quiet:
                    bar.write(
                        f"kmq: skipped {result.input}: {result.message}",
                        file=sys.stderr,
                    )
                elif result.message and not args.quiet:
                    bar.write(f"kmq: note: {result.input}: {result.message}", file=sys.stderr)
                bar.update()

            if client is None:
                results = batch.run_jobs(jobs, workers=args.jobs, on_result=report)
            else:
                results = batch.run_on_dask(jobs, client, on_result=report)
    summary = batch.Summary.of(results)
    if not args.quiet:
        print(summary)
    failed = summary.files[batch.Status.FAILED]
    if failed:
        raise CliError(f"{failed} of {len(results)} files failed")


@contextlib.contextmanager
def _dask_client(address: str | None, workers: int) -> Iterator[Client | None]:
    """A quiet client of the Dask cluster at address (None: no Dask; "local": a LocalCluster of
    `workers` processes): each failure is one `kmq: error:` line of its file, not Dask's log."""
    if address is None:
        yield None
        return
    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(
                batch.dask_client(address, workers=workers, quiet=True)
            )
        except (ImportError, batch.ClusterError) as error:
            raise CliError(str(error)) from None
        yield client


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says: a figure is looked at, not stored."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(image)


def _compare(args: argparse.Namespace) -> None:
    _check_loss(args)
    output_format = _output_format(args.output, args.format)
    image = _upright(_open_image(args.input, args.convert))
    show = not args.quiet and sys.stderr.isatty()
    try:
        trips = [
            figure.round_trip(image, k, seed=args.seed, compression=args.compression, dither=args.dither, psnr_loss=args.psnr_loss)
            for k in tqdm(args.k, desc=f"kmq: {args.input.name}", unit="K", file=sys.stderr, leave=False, disable=not show)
        ]
    except ValueError as error:
        raise CliError(f"{args.input}: {error}") from None
    drawn = figure.draw_figure(image, trips, width=args.width)
    _save_as(drawn, args.output, output_format, args.input, None)
    if not args.quiet:
        report = (
            sys.stderr if str(args.output) == "-" else sys.stdout
        )  # keep stdout for the file
        print(
            f"{args.input} -> {args.output}  {drawn.width}x{drawn.height}", file=report
        )
        print(figure.comparison_table(image, trips), file=report)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None, line: str | None = None) -> None:
    print(f"kmq: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, prog: str = "kmq") -> int:
    """Run the `kmq` command (named `prog` in its usage); returns the exit status."""
    args = _build_parser(prog).parse_args(argv)
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        with warnings.catch_warnings(), _sigterm_as_interrupt():
            warnings.showwarning = _show_warning  # one "kmq: warning:" line, restored on return
            run(args)
    except UsageError as error:
        print(f"kmq: error: {error} (see kmq --help)", file=sys.stderr)
        return EXIT_USAGE
    except CliError as error:
        print(f"kmq: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Terminated:
        print("kmq: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("kmq: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `kmq info ... | head`): no traceback, and none at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except MemoryError:
        print("kmq: error: out of memory", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:
        if caused_by_interrupt(error):  # one the library did not turn back into a KeyboardInterrupt
            print("kmq: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if os.environ.get(DEBUG_VARIABLE):
            raise
        print(f"kmq: error: {type(error).__name__}: {error} (set {DEBUG_VARIABLE}=1 for the traceback)", file=sys.stderr)
        return EXIT_ERROR
    return 0

