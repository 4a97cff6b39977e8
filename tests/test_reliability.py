"""Hostile input, faults, concurrency and leaks: the decoder never crashes, hangs or over-allocates."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLES, SPEC, kmq_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

sys.path.insert(0, str(ROOT / "fuzz"))
from targets import ALLOWED, MAX_PIXELS, decode, fix_checksums

VECTOR = re.compile(r"^```kmq-vector (\S+).*?\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _small_files() -> dict[str, bytes]:
    files = {name: (SAMPLES / name).read_bytes() for name in ("kodim23-k1.kmq", "kodim03-p12-k16-zstd.kmq", "kodim03-p12-k16.kmq")}
    for match in VECTOR.finditer(SPEC.read_text(encoding="utf-8")):
        files[f"vector {match.group(1)}"] = bytes.fromhex(" ".join(line.split("#")[0] for line in match.group(2).splitlines()))
    return files


SMALL = _small_files()


@pytest.fixture(autouse=True)
def _small_bomb_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", MAX_PIXELS)


def _warm(data: bytes) -> None:
    """Decode the intact file once, untimed: numba compiles a kernel on its first call in a
    fresh install (a second or two), which is no file's doing."""
    decode(data)


def _decode_quickly(data: bytes) -> None:
    """decode() raises only allowed exceptions (it swallows those) and finishes well under a second."""
    start = time.perf_counter()
    decode(data)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_truncation_raises_a_clean_error(name: str) -> None:
    data = SMALL[name]
    _warm(data)
    for cut in range(len(data)):
        _decode_quickly(data[:cut])
        with pytest.raises(ALLOWED):
            with Image.open(io.BytesIO(data[:cut])) as image:
                image.load()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.filterwarnings("ignore:KMQ exif chunk is not EXIF data")  # a flipped byte of vector D's TIFF header
@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_single_byte_corruption_is_caught(name: str) -> None:
    """Each corrupted byte is reported by a checksum (or the rule it breaks), never a crash;
    with the checksums mended, the decoder's own rules must still fail cleanly."""
    data = SMALL[name]
    _warm(data)
    for position in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            corrupt = bytearray(data)
            corrupt[position] ^= flip
            with pytest.raises(ALLOWED):
                with Image.open(io.BytesIO(bytes(corrupt))) as image:
                    image.load()
            fix_checksums(corrupt)
            _decode_quickly(bytes(corrupt))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    colours=st.integers(1, 300),
    k=st.one_of(st.integers(1, 300), st.sampled_from([1024, 65536])),
    compression=st.sampled_from(["none", "zlib", "zstd"]),
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["RGB", "L"]),
)
def test_round_trip_properties(width: int, height: int, colours: int, k: int, compression: str, seed: int, mode: str) -> None:
    """Size and mode kept, at most k colours, lossless when the image has <= k colours, and
    re-encoding the decoded image at the same k gives the same pixels."""
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    palette = rng.integers(0, 256, (colours, channels), dtype=np.uint8)
    pixels = palette[rng.integers(0, colours, (height, width))]
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
    distinct = len(np.unique(pixels.reshape(-1, channels), axis=0))
    with Image.open(io.BytesIO(kmq_bytes(image, k=k, compression=compression, seed=seed % 1000))) as decoded:
        decoded.load()
        assert (decoded.size, decoded.mode) == (image.size, image.mode)
        out = np.asarray(decoded).reshape(-1, channels)
        assert len(np.unique(out, axis=0)) <= min(k, distinct)
        if distinct <= k:
            assert decoded.tobytes() == image.tobytes()
        with Image.open(io.BytesIO(kmq_bytes(decoded, k=k, compression=compression))) as again:
            assert again.tobytes() == decoded.tobytes()


def test_many_threads_give_the_bytes_and_pixels_of_a_sequential_run(ihc: Image.Image, parrot: Image.Image) -> None:
    jobs = [(image, k, compression) for image in (ihc, parrot) for k in (2, 16, 300) for compression in ("none", "zstd")]
    expected = {}
    for image, k, compression in jobs:
        data = kmq_bytes(image, k=k, compression=compression)
        with Image.open(io.BytesIO(data)) as decoded:
            expected[(id(image), k, compression)] = (data, decoded.tobytes())
    failures: list[str] = []

    def work(image: Image.Image, k: int, compression: str) -> None:
        data = kmq_bytes(image.copy(), k=k, compression=compression)
        with Image.open(io.BytesIO(data)) as decoded:
            if (data, decoded.tobytes()) != expected[(id(image), k, compression)]:
                failures.append(f"k={k} {compression}")

    threads = [threading.Thread(target=work, args=job) for job in jobs * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_a_thousand_round_trips_do_not_grow_memory(parrot: Image.Image) -> None:
    # 16 colours at k = 16: the lossless path, so 1,000 round trips stay quick.
    small = parrot.resize((48, 32)).quantize(16).convert("RGB")

    def round_trip() -> None:
        with Image.open(io.BytesIO(kmq_bytes(small, k=16))) as image:
            image.load()

    for _ in range(100):  # warm up caches, thread pools and allocator arenas
        round_trip()
    tracemalloc.start()
    before_traced, before_rss = tracemalloc.get_traced_memory()[0], _rss_bytes()
    for _ in range(1000):
        round_trip()
    after_traced, after_rss = tracemalloc.get_traced_memory()[0], _rss_bytes()
    tracemalloc.stop()
    assert after_traced - before_traced < 256 * 1024
    assert after_rss - before_rss < 16 * 1024 * 1024


def test_load_refuses_a_short_file_before_allocating(parrot: Image.Image) -> None:
    data = kmq_bytes(parrot.resize((2000, 2000)), k=4, compression="none")
    with Image.open(io.BytesIO(data[:1000])) as image:
        tracemalloc.start()
        with pytest.raises(OSError, match="truncated KMQ file: 1000 bytes"):
            image.load()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 1_000_000  # the 12 MB image was never allocated


def _peak_mb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def test_atheris_fuzzer_short_run_finds_nothing(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    subprocess.run([sys.executable, str(ROOT / "fuzz" / "make_corpus.py"), str(corpus)], check=True, timeout=60)
    # libFuzzer's RSS is getrusage's maxrss, which a child inherits from this process's peak:
    # its 2 GB limit is counted from there.
    limit = 2048 + _peak_mb()
    result = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "fuzz_decode.py"), str(corpus), "-runs=3000", "-seed=1", f"-rss_limit_mb={limit}", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # libFuzzer may finish a batch past -runs, so it can report a few more runs than asked.
    done = re.search(r"Done (\d+) runs", result.stderr)
    assert done and int(done.group(1)) >= 3000, result.stderr[-3000:]
    assert not list(tmp_path.glob("crash-*"))
    shutil.rmtree(corpus)


@pytest.mark.parametrize("seed", [11, 12])
def test_field_aware_campaign_over_every_entry_point_finds_nothing(tmp_path: Path, seed: int) -> None:
    """Mutated header fields, chunks, strip tables, flags and literals, checksums mended, read by
    Pillow, the numpy API, stream and the CLI in a worker under a 1 GB address-space cap."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "campaign.py"), "--files", "250", "--seed", str(seed), "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["failures"] == 0, report["failed"]
    assert report["files"] == 250
