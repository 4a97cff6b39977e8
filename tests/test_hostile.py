"""Files built to cost gigabytes or minutes, and outputs that must not be clobbered: every read
path stays bounded by what its caller asked for, whatever the file's sizes and strip cut."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLES
from PIL import Image

from pil_kmq import KmqError, atomic, decode_kmq, stream
from pil_kmq.cli import main

sys.path.insert(0, str(ROOT / "fuzz"))
import hostile

MB = 1 << 20

def _peak(tmp_path: Path, maker: str, arguments: list[int], read: str, cap: int) -> int:
    """Peak memory above baseline of `read` on hostile.maker(*arguments), in a fresh process
    capped at `cap` bytes of address space more than it has (a regression fails, not swaps)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "fuzz" / "hostile.py"), maker, json.dumps(arguments), read, str(tmp_path / "f.kmq"), str(cap)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["outcome"] == "ok", f"{read} raised {found['outcome']} (cap {cap / MB:.0f} MB)"
    return int(found["peak"])


# 4000 x 4000 RGBA at k = 257 in one zstd strip: 16 megapixels in ~1.2 kB.
ONE_STRIP = ("one_strip_image", [4000, 4000, 4, 257])
ONE_STRIP_IMAGE = 4000 * 4000 * 4  # Pillow's RGBA image
ONE_STRIP_INDICES = 4000 * 4000 * 2  # uint16 at k = 257


ONE_ROWS_STRIP = ("one_rows_strip_image", [4000, 4000, 4, 257])  # the same as one rows_zstd strip
ONE_BYTE_ROWS_STRIP = ("one_rows_strip_image", [4000, 4000, 4, 16, 6])  # one byte_rows_zstd strip, 8-bit indices
ONE_MED_ROWS_STRIP = ("one_rows_strip_image", [4000, 4000, 4, 16, 7])  # one med_rows_zstd strip, a residual a pixel
STRIPS = pytest.mark.parametrize("strip", [ONE_STRIP, ONE_ROWS_STRIP, ONE_BYTE_ROWS_STRIP, ONE_MED_ROWS_STRIP], ids=["runs", "rows", "byte rows", "predicted rows"])


@STRIPS
@pytest.mark.parametrize("entry", ["verify", "kmq info"])
def test_verify_and_info_stay_within_64_mb_whatever_the_image_size(tmp_path: Path, entry: str, strip: tuple[str, list[int]]) -> None:
    assert _peak(tmp_path, *strip, entry, 400 * MB) <= 64 * MB


@STRIPS
@pytest.mark.parametrize(("entry", "output"), [("load", ONE_STRIP_IMAGE), ("parser", ONE_STRIP_IMAGE), ("decode_kmq", ONE_STRIP_INDICES)])
def test_a_strip_covering_the_whole_image_costs_a_piece_not_the_strip(tmp_path: Path, entry: str, output: int, strip: tuple[str, list[int]]) -> None:
    """Before, the strip was decoded in one go at ~10 bytes a pixel of temporaries. (decode_kmq's
    indices are a byte a pixel at k = 16, half those at k = 257.)"""
    if entry == "decode_kmq" and strip[1][3] <= 256:
        output //= 2
    assert _peak(tmp_path, *strip, entry, output + 400 * MB) <= 1.25 * output + 64 * MB


@pytest.mark.parametrize("entry", ["verify", "iter_rows", "read_rows(0, 1)"])
def test_rows_that_unpack_to_8_values_a_pixel_cost_a_piece_of_values(tmp_path: Path, entry: str) -> None:
    """40 million 1-pixel rows, each a byte: a piece is bounded by the values it unpacks."""
    assert _peak(tmp_path, "tall_rows_strip", [40_000_000, 2], entry, 400 * MB) <= 64 * MB


@STRIPS
def test_a_row_range_of_a_one_strip_image_costs_the_rows_asked_for(tmp_path: Path, strip: tuple[str, list[int]]) -> None:
    assert _peak(tmp_path, *strip, "read_rows(0, 1)", 400 * MB) <= 1.25 * 4000 * 4 + 64 * MB
    assert _peak(tmp_path, *strip, "iter_rows", 400 * MB) <= 64 * MB  # rows dropped as they come


@pytest.mark.parametrize("entry", ["load", "read_rows(0, 1)", "decode_kmq"])
def test_one_very_wide_row_is_decoded_in_parts(tmp_path: Path, entry: str) -> None:
    """A 52-byte k = 1 file of one row of 40 million pixels: the row is all there is to ask for."""
    width = 40_000_000
    output = {"load": width * 4, "read_rows(0, 1)": width * 3, "decode_kmq": width}[entry]
    assert _peak(tmp_path, "one_wide_row", [width], entry, output + 400 * MB) <= 1.25 * output + 64 * MB


def test_stream_applies_a_pixel_limit_by_default(tmp_path: Path) -> None:
    path = tmp_path / "big.kmq"
    path.write_bytes(hostile.blank_image(2**17 + 1, 2**17, 1))
    with pytest.raises(KmqError, match="exceeds max_pixels=17,179,869,184"):
        stream.open_kmq(path)
    with stream.open_kmq(path, max_pixels=None) as reader:
        assert reader.shape == (2**17, 2**17 + 1, 1)


@pytest.mark.parametrize("name", sorted(hostile.huge_sizes()))
def test_sizes_past_the_end_of_the_file_are_refused_cleanly_on_every_path(tmp_path: Path, name: str) -> None:
    data = hostile.huge_sizes()[name]
    path = tmp_path / "f.kmq"
    path.write_bytes(data)
    with pytest.raises(KmqError), stream.open_kmq(path) as reader:
        reader.read_rows(0, 1)
    with pytest.raises(KmqError):
        decode_kmq(data)
    with pytest.raises(OSError), Image.open(io.BytesIO(data)) as image:
        image.load()


def test_many_tiny_strips_cost_time_per_byte_not_a_pool_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """70,000 one-row strips took 17 s of CPU when each pair of strips built a thread pool."""
    from pil_kmq import jobs

    pools = []
    real_init = jobs._Pool.__init__

    def counting_init(self: jobs._Pool, workers: int) -> None:
        pools.append(1)
        real_init(self, workers)

    monkeypatch.setattr(jobs._Pool, "__init__", counting_init)
    monkeypatch.setattr(jobs, "_pool", None)  # made afresh here, so that the count sees it
    data = hostile.many_tiny_strips(70_000)
    start = time.process_time()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.getpixel((3, 2)) == (0, 0, 0)
    _, (indices, _) = decode_kmq(data)
    assert indices[5, 3] == 8
    elapsed = time.process_time() - start
    assert len(pools) == (jobs.WORKERS > 1)  # the one shared pool, made once (none on one core)
    assert elapsed < 8.0, f"{elapsed:.1f} s of CPU for 1.5 MB of strips"


def test_flat_stretches_that_stop_at_once_cost_a_few_steps_a_pixel() -> None:
    """A third of the pixels start a stretch of up to 4,095 pixels that stops after one:
    scanning the row above for each stretch's length took 50 x a near_rans pixel's time. The
    row is scanned once (near._stretch), so the file decodes in about near_rans's time."""
    from pil_kmq import near

    data = hostile.stretch_rescans(4096, 512)
    _, (indices, codebook) = decode_kmq(data)
    assert indices[1, 2] == 1 and indices[1, 3] == 0 and not indices[0].any()
    palette = near.Palette(codebook)
    flat, plain = near.encode_near(indices, palette, stretches=True), near.encode_near(indices, palette)
    times = []
    for payload, stretches in ((flat, True), (plain, False), (flat, True), (plain, False)):
        start = time.process_time()
        near.NearStrip(payload, palette, 4096, 2, "strip", stretches).decode(np.empty(indices.size, np.uint8))
        times.append(time.process_time() - start)
    assert min(times[0], times[2]) < 4 * min(times[1], times[3]) + 0.05, times


# --- outputs --------------------------------------------------------------------------------


def test_stream_encode_writes_through_a_fifo_and_leaves_it_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.kmq"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    image = np.asarray(Image.open(SAMPLES / "kodim23.png").convert("RGB"))
    stream.encode(image, fifo, k=4)
    reader.join(timeout=60)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    _, (indices, _) = decode_kmq(received[0])
    assert indices.shape == image.shape[:2]


def test_stream_encode_through_a_symlink_to_dev_null_keeps_the_device(tmp_path: Path) -> None:
    link = tmp_path / "null.kmq"
    link.symlink_to("/dev/null")
    stream.encode(np.zeros((4, 4, 3), np.uint8), link, k=1)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert link.is_symlink()


def test_sigkill_during_stream_encode_leaves_nothing_behind(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import numpy as np, time
        from pil_kmq import stream

        class Slow:
            shape = (4096, 512, 3)
            starts = 0
            def __getitem__(self, rows):
                start, stop, _ = rows.indices(4096)
                if start == 0:
                    Slow.starts += 1
                    if Slow.starts == 2:
                        print("second pass", flush=True)  # the output is open by now
                time.sleep(0.2)
                strip = np.zeros((stop - start, 512, 3), np.uint8)
                strip[:, ::2] = 255  # two colours: the second pass reads every strip
                return strip

        stream.encode(Slow(), {str(tmp_path / "out.kmq")!r}, k=2)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "second pass"
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    process.stdout.close()
    assert list(tmp_path.iterdir()) == []


def test_encode_refuses_to_replace_its_input_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "x.png"
    image.write_bytes((SAMPLES / "kodim23.png").read_bytes())
    assert main(["encode", "-q", str(image), str(image), "-k", "4"]) == 1
    assert "is the input file; pass --force" in capsys.readouterr().err
    assert image.read_bytes() == (SAMPLES / "kodim23.png").read_bytes()
    assert main(["encode", "-q", "--force", str(image), str(image), "-k", "4"]) == 0
    with Image.open(image) as replaced:
        assert replaced.format == "KMQ"


def test_encode_to_dev_stdout_into_a_pipe(tmp_path: Path) -> None:
    command = f"{sys.executable} -m pil_kmq encode -q {SAMPLES / 'kodim23.png'} /dev/stdout -k 4 | cat > {tmp_path / 'out.kmq'}"
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert decode_kmq((tmp_path / "out.kmq").read_bytes())[0].k == 4


def test_no_clobber_writes_race_to_exactly_one_winner(tmp_path: Path) -> None:
    target = tmp_path / "out.kmq"
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def write(number: int) -> None:
        barrier.wait()
        try:
            atomic.write_atomic(target, bytes([number]) * 1000, overwrite=False)
            outcomes.append("wrote")
        except FileExistsError:
            outcomes.append("exists")

    threads = [threading.Thread(target=write, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["exists"] * 7 + ["wrote"]
    assert len(set(target.read_bytes())) == 1
    assert [path.name for path in tmp_path.iterdir()] == ["out.kmq"]


def test_two_concurrent_converts_write_each_file_once(tmp_path: Path) -> None:
    from pil_kmq import batch

    job = batch.Job(SAMPLES / "kodim23.png", tmp_path / "kodim23.kmq", {"k": 4}, force=False, skip_if_larger=False)
    barrier = threading.Barrier(2)
    results = []

    def convert() -> None:
        barrier.wait()
        results.append(batch.convert_file(job))

    threads = [threading.Thread(target=convert) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result.status for result in results) == [batch.Status.CONVERTED, batch.Status.SKIPPED]


# --- metadata and options -------------------------------------------------------------------


def test_an_exif_chunk_that_is_only_a_tiff_header_decodes_to_tiff_without_a_traceback(tmp_path: Path) -> None:
    source = tmp_path / "f.kmq"
    source.write_bytes(hostile.bad_exif_chunk())
    result = subprocess.run(
        [sys.executable, "-m", "pil_kmq", "decode", str(source), str(tmp_path / "out.tif")], capture_output=True, text=True, timeout=120, check=False
    )
    assert "Traceback" not in result.stderr
    assert result.returncode == 0 and "kmq: warning:" in result.stderr
    with Image.open(tmp_path / "out.tif") as image:
        assert image.size == (1, 1)


@pytest.mark.parametrize(("tag", "kind", "value"), [(0x0112, 2, "6"), (0x010F, 12, 1.5)])
def test_a_tiff_with_oddly_typed_tags_saves_as_kmq_with_a_warning(tmp_path: Path, tag: int, kind: int, value: object) -> None:
    """Orientation typed ASCII, Make typed DOUBLE: PNG saves such a file; so must KMQ."""
    from PIL import TiffImagePlugin

    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[tag] = value
    info.tagtype[tag] = kind
    path = tmp_path / "odd.tif"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path, tiffinfo=info)
    with Image.open(path) as image, pytest.warns(UserWarning, match="could not be stored"):
        image.save(tmp_path / "odd.kmq", k=2)
    result = subprocess.run(
        [sys.executable, "-m", "pil_kmq", "encode", "-q", str(path), str(tmp_path / "cli.kmq")], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr


def test_an_unexpected_error_is_one_line_unless_debug_is_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pil_kmq import cli

    def broken(args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "_info", broken)
    monkeypatch.delenv("KMQ_DEBUG", raising=False)
    assert main(["info", str(SAMPLES / "kodim23-k16.kmq")]) == 1
    assert capsys.readouterr().err == "kmq: error: RuntimeError: boom (set KMQ_DEBUG=1 for the traceback)\n"
    monkeypatch.setenv("KMQ_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["info", str(SAMPLES / "kodim23-k16.kmq")])


@pytest.mark.parametrize("seed", [0, 2**32 - 2, 2**32 - 1])
@pytest.mark.parametrize("k", [4, 64, 300])
def test_every_seed_in_range_works(seed: int, k: int) -> None:
    image = Image.open(SAMPLES / "kodim23.png").convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", k=k, seed=seed)
    assert decode_kmq(buffer.getvalue())[0].k <= k


def test_empty_and_prefixed_exif_chunks_read_as_pillow_expects() -> None:
    from pil_kmq.format import unpack_metadata

    assert unpack_metadata([(b"exif", b"")]) == {}
    assert unpack_metadata([(b"exif", b"Exif\0\0MM\0*rest")]) == {"exif": b"Exif\0\0MM\0*rest"}
    assert unpack_metadata([(b"exif", b"MM\0*rest")]) == {"exif": b"Exif\0\0MM\0*rest"}
    for data in (b"nonsense", b"Exif\0\0junk", b"Exif\0\0", b"Exif\0\0Exif\0\0MM\0*rest"):  # spec 9.1.7, prefix or not
        with pytest.warns(UserWarning, match="not EXIF data"):
            assert unpack_metadata([(b"exif", data)]) == {}, data


# --- found by review ------------------------------------------------------------------------


def test_a_zstd_frame_split_across_feeds_decodes(tmp_path: Path) -> None:
    """A big strip's literal frame arriving in parts went to the one-call decoder as a part."""
    from PIL import ImageFile

    rng = np.random.default_rng(7)
    indices = np.repeat(rng.integers(0, 129, 400), 3000)[: 1100 * 1000].reshape(1000, 1100).astype(np.uint8)
    codebook = rng.integers(0, 256, (129, 3), dtype=np.uint8)
    from pil_kmq.coding import StripTable, encode_strip, pack_table
    from pil_kmq.format import IndexCoding, StripMethod, crc32, new_header, pack_crc

    strip = encode_strip(indices, 8, StripMethod.RUNS_ZSTD)
    assert strip[0] == StripMethod.RUNS_ZSTD
    table = pack_table(StripTable(1000, [len(strip)], [crc32(strip)]))
    body = new_header(1100, 1000, 3, 129, IndexCoding.STRIPS, len(table) + len(strip)).pack() + codebook.tobytes() + table + strip
    data = body + pack_crc(crc32(body))
    expected = codebook[indices]
    for size in (100, 65_536):
        parser = ImageFile.Parser()
        for start in range(0, len(data), size):
            parser.feed(data[start : start + size])
        with parser.close() as image:
            assert np.array_equal(np.asarray(image), expected)
    assert np.array_equal(decode_kmq(data)[1].indices, indices)


def test_decoding_inside_a_pool_job_does_not_wait_on_the_pool(tmp_path: Path) -> None:
    """stream.encode from a source that reads another KMQ file: both use the shared pool."""
    from pil_kmq.jobs import run_jobs

    buffer = io.BytesIO()
    Image.open(SAMPLES / "ihc.png").convert("RGB").resize((1200, 900)).save(buffer, "KMQ", k=16)
    data = buffer.getvalue()  # four strips: two jobs for the pool

    def decode(_: int) -> int:
        return int(decode_kmq(data)[1].indices.sum())

    done: list[list[int]] = []
    worker = threading.Thread(target=lambda: done.append(run_jobs(decode, [(0,), (1,), (2,)])), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert done and len(set(done[0])) == 1


def test_a_single_segment_zstd_frame_over_8_mib_is_refused_by_every_path(tmp_path: Path) -> None:
    from pil_kmq.decoding import check_zstd_header

    head = b"\x28\xb5\x2f\xfd" + bytes([0xA0]) + (10_500_000).to_bytes(4, "little")  # single segment, 4-byte size
    with pytest.raises(KmqError, match="window of 10,500,000 bytes is over 8,388,608"):
        check_zstd_header(head, 10_500_000, "test")


def test_whole_image_rows_stay_right_while_other_rows_are_read(tmp_path: Path) -> None:
    path = tmp_path / "x.kmq"
    path.write_bytes(hostile.many_tiny_strips(70_000))  # a strip table longer than one read chunk
    expected = decode_kmq(path.read_bytes())[1].indices
    with stream.open_kmq(path) as reader:
        for row, rows in reader.iter_rows(indices=True):
            if row % 9_999 == 0:
                assert np.array_equal(reader.read_rows(row, row + 1, indices=True), expected[row : row + 1])
            assert np.array_equal(rows, expected[row : row + len(rows)])
        assert np.array_equal(reader.read_rows(65_530, 65_545, indices=True), expected[65_530:65_545])


def test_long_output_names_are_written(tmp_path: Path) -> None:
    target = tmp_path / ("a" * 240 + ".kmq")
    atomic.write_atomic(target, b"data")
    atomic.write_atomic(target, b"new")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_an_interrupted_caller_does_not_wait_for_good_on_a_stuck_pool_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C that lands in numba's compiler can leave one of its locks held, and a pool job
    then waits for it for good: the interrupted caller waits a few seconds at most, drops the
    jobs not started, and the pool's threads (daemon) cannot keep the process from exiting."""
    from pil_kmq import jobs

    if jobs.WORKERS < 2:
        pytest.skip("one core: no pool")
    monkeypatch.setattr(jobs, "INTERRUPTED_WAIT_SECONDS", 0.3)
    stuck, ran, started = threading.Event(), [], threading.Semaphore(0)

    def job(number: int) -> int:
        if number == 0:
            for _ in range(jobs.WORKERS):  # interrupted once every pool thread is held
                assert started.acquire(timeout=30)
            raise KeyboardInterrupt
        if number <= jobs.WORKERS:
            started.release()
            stuck.wait(30)  # every pool thread held, as by a lock left held
        ran.append(number)
        return number

    _interrupted_quickly(job, stuck)
    assert all(thread.daemon for thread in threading.enumerate() if thread.name.startswith("kmq-pool"))
    assert sorted(ran) == list(range(1, jobs.WORKERS + 1))  # the queued jobs never ran

    # An error, unlike an interrupt, waits for every job: the caller's (job 0) or a pool job's.
    for failing in (0, 1):

        def erring(number: int, failing: int = failing) -> int:
            if number == failing:
                raise ValueError(f"job {failing}")
            time.sleep(0.2)
            ran.append(number)
            return number

        ran.clear()
        with pytest.raises(ValueError, match=f"job {failing}"):
            jobs.run_jobs(erring, [(0,), (1,), (2,)])
        assert sorted(ran) == [number for number in (0, 1, 2) if number != failing]


def _interrupted_quickly(job: object, stuck: threading.Event) -> None:
    """run_jobs over WORKERS + 3 jobs raises the KeyboardInterrupt within 5 s, though the jobs
    holding the pool's threads stay stuck until it has; then they are let go."""
    from pil_kmq import jobs

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        jobs.run_jobs(job, [(number,) for number in range(jobs.WORKERS + 3)])
    waited = time.monotonic() - start
    stuck.set()
    time.sleep(0.3)
    assert waited < 5, f"waited {waited:.1f} s"


def test_a_ctrl_c_while_waiting_for_the_pool_drops_its_queued_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller spends most of a many-strip save waiting for the pool: an interrupt there,
    too, drops the jobs not started and waits for running ones a few seconds at most."""
    from pil_kmq import jobs

    if jobs.WORKERS < 2:
        pytest.skip("one core: no pool")
    monkeypatch.setattr(jobs, "INTERRUPTED_WAIT_SECONDS", 0.3)
    stuck, ran, started = threading.Event(), [], threading.Semaphore(0)
    real_wait, waits = jobs.wait, []

    def interrupted_wait(*args: object, **kwargs: object) -> object:
        waits.append(1)
        if len(waits) == 1:  # the caller's wait for the pool: Ctrl-C once every thread is held
            for _ in range(jobs.WORKERS):
                assert started.acquire(timeout=30)
            raise KeyboardInterrupt
        return real_wait(*args, **kwargs)  # type: ignore[arg-type]

    def job(number: int) -> int:
        if 1 <= number <= jobs.WORKERS:
            started.release()
            stuck.wait(30)
        ran.append(number)
        return number

    monkeypatch.setattr(jobs, "wait", interrupted_wait)
    _interrupted_quickly(job, stuck)
    assert sorted(ran) == list(range(jobs.WORKERS + 1))  # the caller's job and the held ones; none queued


def test_a_ctrl_c_that_numba_turned_into_a_system_error_is_raised_as_keyboard_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted compiled function can come back as "SystemError: ... returned a result
    with an exception set", caused by the KeyboardInterrupt: a save or load raises the
    KeyboardInterrupt itself; any other SystemError is left as it is."""
    from pil_kmq import api, plugin

    def interrupted(*args: object, **kwargs: object) -> None:
        raise SystemError("CPUDispatcher(<function _iterate>) returned a result with an exception set") from KeyboardInterrupt()

    image = Image.new("RGB", (8, 8), (10, 20, 30))
    monkeypatch.setattr(api, "Clustering", interrupted)
    with pytest.raises(KeyboardInterrupt):
        api.compress_image(np.asarray(image), k=2)
    with pytest.raises(KeyboardInterrupt):
        image.save(io.BytesIO(), "KMQ", k=2)
    monkeypatch.undo()
    data = io.BytesIO()
    image.save(data, "KMQ", k=2)
    monkeypatch.setattr(plugin.KmqDecoder, "_put", interrupted)
    with pytest.raises(KeyboardInterrupt), Image.open(io.BytesIO(data.getvalue())) as opened:
        opened.load()

    def other(*args: object, **kwargs: object) -> None:
        raise SystemError("something else")

    monkeypatch.setattr(plugin.KmqDecoder, "_put", other)
    with pytest.raises(SystemError, match="something else"), Image.open(io.BytesIO(data.getvalue())) as opened:
        opened.load()
