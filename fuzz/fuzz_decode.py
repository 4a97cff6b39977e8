"""Coverage-guided fuzzing of the KMQ decoder with atheris (libFuzzer for Python).

Every input must decode or raise one of Pillow's conventional exceptions (targets.ALLOWED);
anything else (struct.error, IndexError, zlib.error, MemoryError, a numpy error) crashes
the run and leaves the input in the artifact directory.

The first input byte picks a mode. Random mutations nearly always break a checksum, which
stops decoding early: with bit 0 set, the harness recomputes header_crc, every strip_crc
and file_crc after mutating. Mutated compressed bytes almost never decompress: with bit 1
set, the next 8 bytes are XORed into each strip's decompressed flags and literals, which
are compressed again (targets.recode_strips), so the rules on decompressed data are hit.

    python fuzz/make_corpus.py fuzz/corpus
    python fuzz/fuzz_decode.py fuzz/corpus -max_total_time=600      # a long run
    python fuzz/fuzz_decode.py fuzz/corpus -runs=2000 -seed=1       # what the tests run
"""

from __future__ import annotations

import sys

import atheris

# Instrument only the code under test: numpy, scipy, scikit-learn and zstandard are imported
# first, uninstrumented, which keeps start-up short and executions fast.
import numpy  # noqa: F401
import scipy.spatial  # noqa: F401
import sklearn.cluster  # noqa: F401
import zstandard  # noqa: F401

# numba compiles the kernel modules from their bytecode, which atheris's probes would break:
# they stay uninstrumented (their Python wrappers check every size they hand a kernel).
with atheris.instrument_imports(include=["PIL", "pil_kmq", "targets"], exclude=["pil_kmq.expand", "pil_kmq.kmeans", "pil_kmq.near", "pil_kmq.predict", "pil_kmq.radix", "pil_kmq.rate"]):
    from PIL import Image
    from targets import MAX_PIXELS, decode, fix_checksums, recode_strips

    import pil_kmq  # noqa: F401

Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def test_one_input(raw: bytes) -> None:
    if not raw:
        return
    mode, body = raw[0], raw[1:]
    if mode & 2:
        noise, data = body[:8], bytearray(body[8:])
        recode_strips(data, noise)
    else:
        data = bytearray(body)
        if mode & 1:
            fix_checksums(data)
    decode(bytes(data))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
