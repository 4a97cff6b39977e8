"""The kmq command: encode, decode, info; one-line errors, atomic outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES, failing_output, kmq_bytes
from PIL import Image

from pil_kmq.cli import main


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pil_kmq", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_encode_prints_size_table_and_decode_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kmq, png = tmp_path / "ihc.kmq", tmp_path / "ihc.png"
    assert main(["encode", str(SAMPLES / "ihc.png"), str(kmq), "-k", "2", "--compression", "none"]) == 0
    out = capsys.readouterr().out
    assert "68,781" in out and "1,650,744" in out
    assert main(["decode", str(kmq), str(png)]) == 0
    with Image.open(png) as decoded, Image.open(kmq) as original:
        assert decoded.format == "PNG"
        assert decoded.tobytes() == original.tobytes()


def test_decode_to_any_pillow_format(tmp_path: Path) -> None:
    for extension, fmt in ((".bmp", "BMP"), (".tif", "TIFF"), (".webp", "WEBP")):
        out = tmp_path / f"x{extension}"
        assert main(["decode", str(SAMPLES / "kodim23-k16.kmq"), str(out)]) == 0
        with Image.open(out) as image:
            assert image.format == fmt


@pytest.mark.parametrize("extension", [".bmp", ".gif"])
def test_decode_refuses_a_format_that_would_lose_graded_alpha(tmp_path: Path, extension: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The cut-out's soft edge: GIF keeps all-or-nothing transparency, Pillow reads BMP back as RGB."""
    out = tmp_path / f"cut{extension}"
    assert main(["decode", str(SAMPLES / "ihc-cutout-k16.kmq"), str(out)]) == 1
    assert "would lose this RGBA image's transparency" in capsys.readouterr().err
    assert not out.exists()


def test_decode_writes_an_opaque_rgba_image_where_alpha_has_no_place(tmp_path: Path) -> None:
    """All 255: no transparency to lose, as a screenshot saved RGBA; ICO resizes, not refused."""
    Image.new("RGBA", (8, 8), (200, 30, 30, 255)).save(tmp_path / "opaque.kmq", k=2)
    for name in ("o.bmp", "o.gif", "o.ico"):
        assert main(["decode", str(tmp_path / "opaque.kmq"), str(tmp_path / name)]) == 0, name


def test_decode_to_gif_keeps_all_or_nothing_alpha(tmp_path: Path) -> None:
    pixels = [(255, 0, 0, 255), (0, 0, 255, 0)] * 8
    image = Image.new("RGBA", (4, 4))
    image.putdata(pixels)
    image.save(tmp_path / "two.kmq", k=2)
    assert main(["decode", str(tmp_path / "two.kmq"), str(tmp_path / "two.gif")]) == 0
    with Image.open(tmp_path / "two.gif") as back:
        assert back.convert("RGBA").getchannel("A").tobytes() == image.getchannel("A").tobytes()


def test_decode_says_which_metadata_a_format_cannot_keep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(SAMPLES / "ihc-k16-metadata.kmq"), str(tmp_path / "m.gif")]) == 0
    assert "m.gif: GIF keeps no ICC profile, EXIF, XMP: written without" in capsys.readouterr().err
    assert main(["decode", str(SAMPLES / "ihc-k16-metadata.kmq"), str(tmp_path / "m.png")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_decode_format_option_is_named_when_unknown_and_warned_when_it_contradicts_the_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(SAMPLES / "kodim23-k16.kmq"), str(tmp_path / "x.png"), "--format", "NOPE"]) == 2
    assert "--format NOPE: not a format Pillow can write" in capsys.readouterr().err
    assert main(["decode", str(SAMPLES / "kodim23-k16.kmq"), str(tmp_path / "x.png"), "--format", "JPEG"]) == 0
    assert "x.png: JPEG written to a name whose extension means PNG" in capsys.readouterr().err


def test_info_fails_a_file_corrupt_past_its_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The header has its own CRC; a byte changed in the codebook or a strip shows in file_crc."""
    for offset in (60, 18_000):
        data = bytearray((SAMPLES / "ihc-k16.kmq").read_bytes())
        data[offset] ^= 0x5A
        (tmp_path / "bad.kmq").write_bytes(data)
        assert main(["info", str(tmp_path / "bad.kmq"), str(SAMPLES / "ihc-k16.kmq")]) == 1
        printed = capsys.readouterr()
        assert "bad.kmq: file checksum mismatch" in printed.err and "1 of 2 files" in printed.err
        assert printed.out.count("303x227 RGB, k=16") == 2  # both still described


def test_decode_to_stdout_fails_when_the_reader_leaves_early() -> None:
    """A pipe's reader that stops after 10 bytes of a 206 KB BMP: exit 1, not 0, no traceback."""
    command = [sys.executable, "-m", "pil_kmq", "decode", str(SAMPLES / "ihc-k16.kmq"), "-", "--format", "BMP"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(10).startswith(b"BM")
    process.stdout.close()
    assert process.wait(timeout=120) == 1
    with process.stderr:
        assert b"Traceback" not in process.stderr.read()


def test_cli_messages_name_the_problem_in_plain_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_bytes(b"")
    cases = [
        (["encode", str(tmp_path / "folder"), str(tmp_path / "x.kmq")], 1, "folder: Is a directory"),
        (["encode", "-", str(tmp_path / "x.kmq")], 1, "-: reading an image from standard input is not supported"),
        (["info", "-"], 1, "-: reading an image from standard input is not supported"),
        (["compare", str(SAMPLES / "ihc.png"), "-o", str(SAMPLES / "ihc.png"), "-k", "2", "-q"], 1, "ihc.png: is the input file\n"),
        (["compare", str(SAMPLES / "ihc.png"), "-o", str(tmp_path / "c.png"), "--width", "100000"], 2, "width must be at most 16,384"),
        (["convert", str(SAMPLES / "ihc.png"), "-o", str(tmp_path / "afile"), "-q"], 1, "afile: is a file, not a directory for the outputs"),
    ]
    for command, status, message in cases:
        try:
            assert main(command) == status, command
        except SystemExit as exit_info:  # argparse's usage errors
            assert exit_info.code == status, command
        assert message in capsys.readouterr().err, command


def test_compare_draws_the_image_as_its_exif_orientation_says(tmp_path: Path) -> None:
    """A camera's portrait JPEG (orientation 6) is drawn upright, as a viewer shows it."""
    sizes = []
    for orientation in (1, 6):
        exif = Image.Exif()
        exif[0x0112] = orientation
        with Image.open(SAMPLES / "ihc.png") as image:
            image.convert("RGB").save(tmp_path / f"o{orientation}.jpg", exif=exif)
        assert main(["compare", str(tmp_path / f"o{orientation}.jpg"), "-o", str(tmp_path / f"f{orientation}.png"), "-k", "2", "-q"]) == 0
        with Image.open(tmp_path / f"f{orientation}.png") as drawn:
            sizes.append(drawn.size)
    assert sizes[0] != sizes[1]  # 303 x 227 panels against 227 x 303


def test_a_read_only_output_is_not_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """As cp: a file its owner made read-only stays (os.access, since root may write anyway)."""
    target = tmp_path / "kept.kmq"
    target.write_bytes(b"old")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == target else real_access(path, mode, **kw))
    assert main(["encode", str(SAMPLES / "kodim23.png"), str(target), "-k", "2", "-q"]) == 1
    assert "kept.kmq: is read-only; not replaced" in capsys.readouterr().err
    assert target.read_bytes() == b"old"


def test_binary_output_is_not_written_to_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    class Terminal(io.BytesIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(terminal))
    assert main(["encode", str(SAMPLES / "kodim23.png"), "-", "-k", "2", "-q"]) == 1
    assert "-: standard output is a terminal" in capsys.readouterr().err
    assert terminal.getvalue() == b""


def test_info_lists_the_metadata_chunks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(SAMPLES / "ihc-k16-metadata.kmq"), str(SAMPLES / "ihc-k16.kmq")]) == 0
    out = capsys.readouterr().out
    assert out.count("  metadata: ") == 1 and "  metadata: ICC profile (588 bytes), EXIF (26 bytes), XMP (114 bytes)" in out


def test_info_prints_header_fields_for_each_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(SAMPLES / "ihc-k2.kmq"), str(SAMPLES / "kodim23-k16.kmq")]) == 0
    out = capsys.readouterr().out
    assert "303x227 RGB, k=2, bits_per_index=1, index_coding=none" in out
    assert "100x100 RGB, k=16, bits_per_index=4" in out
    assert "40,000" in out


def test_info_shows_version_1_6_and_the_near_rans_strip_of_more_than_256_entries(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(SAMPLES / "legend-near.kmq")]) == 0
    out = capsys.readouterr().out
    assert "KMQ 1.6, 160x64 RGB, k=352, bits_per_index=9, index_coding=strips" in out
    assert "1 strips of 64 rows: 1 near_rans" in out


def test_info_shows_version_1_8_and_the_near_flat_strip(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(SAMPLES / "labels-flat.kmq")]) == 0
    out = capsys.readouterr().out
    assert "KMQ 1.8, 320x240 RGB, k=8" in out and "1 strips of 240 rows: 1 near_flat" in out


def test_module_and_console_script_run() -> None:
    result = run("info", SAMPLES / "kodim23-k1.kmq")
    assert result.returncode == 0 and "k=1" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["encode", "missing.png", "out.kmq"], "missing.png: no such file"),
        (["decode", str(SAMPLES / "ihc.png"), "out.png"], "not a KMQ file"),
        (["decode", str(SAMPLES / "kodim23-k16.kmq"), "out.nope"], "cannot write files with extension '.nope'"),
        (["info", str(SAMPLES / "ihc.png")], "not a KMQ file"),
        (["encode", str(SAMPLES / "regenerate.py"), "out.kmq"], "not an image format Pillow can read"),
    ],
)
def test_errors_are_one_line_on_stderr_without_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pil_kmq", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert message in lines[0] and lines[0].startswith("kmq: error:")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.kmq").exists() and not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-k", "0"], "k must be an int from 1 to 65,536, not 0"),
        (["-k", "70000"], "k must be an int from 1 to 65,536, not 70000"),
        (["-k", "sixteen"], "k must be an int, not 'sixteen'"),
        (["--seed", "-3"], "seed must be an int from 0 to 4294967295, not '-3'"),
        (["--compression", "zip"], "invalid choice: 'zip'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = run("encode", SAMPLES / "ihc.png", tmp_path / "o.kmq", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kmq: error:") and message in lines[0]
    assert not (tmp_path / "o.kmq").exists()


def test_failed_encode_leaves_existing_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "keep.kmq"
    out.write_bytes(b"precious")
    deep = tmp_path / "deep.png"
    Image.new("I;16", (4, 4), 40000).save(deep)
    result = run("encode", deep, out)
    assert result.returncode == 1 and "mode 'I;16'" in result.stderr
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.png", "keep.kmq"]  # no temporary left


def test_corrupt_input_to_decode_leaves_existing_output_untouched(tmp_path: Path) -> None:
    data = bytearray((SAMPLES / "kodim23-k16.kmq").read_bytes())
    data[2000] ^= 0xFF
    (tmp_path / "bad.kmq").write_bytes(bytes(data))
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    result = run("decode", tmp_path / "bad.kmq", out)
    assert result.returncode == 1 and "checksum mismatch" in result.stderr
    assert out.read_bytes() == b"precious"


def test_output_replaces_existing_file_keeping_its_permissions(tmp_path: Path) -> None:
    out = tmp_path / "o.kmq"
    out.write_bytes(b"old")
    os.chmod(out, 0o640)
    assert main(["encode", "-q", str(SAMPLES / "kodim23.png"), str(out), "-k", "4"]) == 0
    assert out.read_bytes().startswith(b"\x89KMQ")
    assert out.stat().st_mode & 0o777 == 0o640


def test_info_reports_unreadable_files_and_continues(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tmp_path / "nope.kmq"), str(SAMPLES / "kodim23-k1.kmq")]) == 1
    captured = capsys.readouterr()
    assert "k=1" in captured.out
    assert "nope.kmq: no such file" in captured.err


def test_output_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.kmq"
    real.write_bytes(b"old")
    link = tmp_path / "link.kmq"
    link.symlink_to(real)
    assert main(["encode", "-q", str(SAMPLES / "kodim23.png"), str(link), "-k", "4"]) == 0
    assert link.is_symlink()
    assert real.read_bytes().startswith(b"\x89KMQ")


def test_dash_writes_to_stdout_and_the_table_to_stderr(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pil_kmq", "encode", str(SAMPLES / "kodim23.png"), "-", "-k", "4"], capture_output=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout.startswith(b"\x89KMQ")
    assert b"File total" in result.stderr
    decoded = subprocess.run([sys.executable, "-m", "pil_kmq", "decode", str(SAMPLES / "kodim23-k16.kmq"), "-", "--format", "PNG"], capture_output=True, timeout=120)
    assert decoded.returncode == 0 and decoded.stdout.startswith(b"\x89PNG")


def test_broken_pipe_gives_no_traceback() -> None:
    files = [str(SAMPLES / "ihc-k2.kmq")] * 300
    command = f"{sys.executable} -m pil_kmq info {' '.join(files)} | head -1"
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_interrupt_while_writing_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pil_kmq import atomic

    out = tmp_path / "keep.kmq"
    out.write_bytes(b"precious")
    monkeypatch.setattr(atomic, "open_partial", failing_output(KeyboardInterrupt()))
    assert main(["encode", "-q", str(SAMPLES / "kodim23.png"), str(out), "-k", "4"]) == 130
    assert out.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.kmq"]


def test_a_ctrl_c_that_numba_turned_into_a_system_error_exits_as_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An interrupted compiled function can come back as "SystemError: ... returned a result
    with an exception set", caused by the KeyboardInterrupt: still exit 130, not 1."""
    from pil_kmq import plugin

    def interrupted(*args: object, **kwargs: object) -> None:
        raise SystemError("CPUDispatcher(<function _iterate>) returned a result with an exception set") from KeyboardInterrupt()

    monkeypatch.setattr(plugin, "compress_image", interrupted)
    assert main(["encode", "-q", str(SAMPLES / "kodim23.png"), str(tmp_path / "x.kmq"), "-k", "4"]) == 130
    assert capsys.readouterr().err.strip() == "kmq: interrupted"
    assert not list(tmp_path.iterdir())


def test_info_on_a_file_cut_inside_the_strip_table_is_one_line(tmp_path: Path) -> None:
    cut = tmp_path / "cut.kmq"
    cut.write_bytes((SAMPLES / "kodim03-p12-k16-zstd.kmq").read_bytes()[:90])
    result = run("info", cut)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "file is truncated, the header declares" in result.stderr


def test_encode_with_psnr_and_dither(tmp_path: Path) -> None:
    out = tmp_path / "ihc.kmq"
    assert main(["encode", str(SAMPLES / "ihc.png"), str(out), "--psnr", "33", "--dither", "-q"]) == 0
    with Image.open(out) as image, Image.open(SAMPLES / "ihc.png") as source:
        assert image.kmq_header.k > 16  # 33 dB needs more than the default 16 colours on this slide
        assert image.size == source.size


def test_encode_and_convert_with_psnr_loss_make_the_api_s_smaller_file(tmp_path: Path) -> None:
    traded, plain = tmp_path / "traded.kmq", tmp_path / "plain.kmq"
    assert main(["encode", str(SAMPLES / "ihc.png"), str(traded), "-k", "32", "--psnr-loss", "0.5", "-q"]) == 0
    assert main(["encode", str(SAMPLES / "ihc.png"), str(plain), "-k", "32", "-q"]) == 0
    assert main(["convert", str(SAMPLES / "ihc.png"), "-o", str(tmp_path / "out"), "-k", "32", "--psnr-loss", "0.5", "-q"]) == 0
    with Image.open(SAMPLES / "ihc.png") as source:
        assert traded.read_bytes() == kmq_bytes(source.convert("RGB"), k=32, psnr_loss=0.5)
    assert (tmp_path / "out" / "ihc.kmq").read_bytes() == traded.read_bytes()
    assert traded.stat().st_size < plain.stat().st_size


@pytest.mark.parametrize(("extra", "why"), [(["--psnr", "30"], "--psnr already makes the smallest file"), (["-k", "8", "--dither"], "both choose each pixel's index")])
def test_psnr_loss_with_psnr_or_dither_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], why: str) -> None:
    assert main(["encode", str(SAMPLES / "ihc.png"), str(tmp_path / "x.kmq"), "--psnr-loss", "0.5", *extra]) == 2
    err = capsys.readouterr().err
    assert "--psnr-loss is for -k without --dither" in err and why in err
    assert "--psnr" not in err.replace("--psnr-loss", "") or "--psnr" in extra  # names only what was given
    assert not (tmp_path / "x.kmq").exists()


def test_compare_draws_rate_optimized_panels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain, traded = tmp_path / "plain.png", tmp_path / "traded.png"
    assert main(["compare", str(SAMPLES / "kodim23.png"), "-k", "8", "32", "-o", str(plain)]) == 0
    plain_table = capsys.readouterr().out
    assert main(["compare", str(SAMPLES / "kodim23.png"), "-k", "8", "32", "--psnr-loss", "1", "-o", str(traded)]) == 0
    traded_table = capsys.readouterr().out
    sizes = [[int(line.split()[2].replace(",", "")) for line in table.splitlines() if line.split()[:1] in (["8"], ["32"])] for table in (plain_table, traded_table)]
    assert len(sizes[0]) == 2 and all(after < before for before, after in zip(*sizes))


def test_encode_k_and_psnr_are_exclusive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["encode", str(SAMPLES / "ihc.png"), str(tmp_path / "x.kmq"), "-k", "4", "--psnr", "30"])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
