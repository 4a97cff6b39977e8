"""kmq convert and pil_kmq.batch: trees of images to KMQ, in parallel, atomically, with a summary."""

from __future__ import annotations

import contextlib
import io
import math
import pickle
import re
import shutil
import subprocess
import sys
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, failing_output, kmq_bytes
from PIL import Image

from pil_kmq import atomic, batch
from pil_kmq.cli import main

PNGS = ("ihc.png", "kodim23.png", "kodim03-p12.png")


def summary_row(out: str, status: str) -> list[str]:
    """The cells of one row of the summary table printed on stdout."""
    (line,) = [line for line in out.splitlines() if line.split()[:1] == [status]]
    return line.split()[1:]


def tree(root: Path) -> Path:
    """in/ihc.png, in/sub/kodim23.png, in/sub/deeper/kodim03-p12.png, plus files to ignore."""
    source = root / "in"
    (source / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(SAMPLES / "ihc.png", source / "ihc.png")
    shutil.copy(SAMPLES / "kodim23.png", source / "sub" / "kodim23.png")
    shutil.copy(
        SAMPLES / "kodim03-p12.png", source / "sub" / "deeper" / "kodim03-p12.png"
    )
    (source / "notes.txt").write_text("not an image")
    shutil.copy(
        SAMPLES / "ihc-k2.kmq", source / "sub" / "old.kmq"
    )  # KMQ files are not inputs
    return source


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_convert_directory_tree_mirrors_it_and_sums_the_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tree(tmp_path)
    out = tmp_path / "out" / "nested"  # created, parents too
    assert main(["convert", str(source), "-o", str(out), "-k", "8", "-j", "1"]) == 0
    expected = ["ihc.kmq", "sub/deeper/kodim03-p12.kmq", "sub/kodim23.kmq"]
    assert files_under(out) == expected
    bytes_in = bytes_out = 0
    for relative in expected:
        image_path = next((source / relative).parent.glob(Path(relative).stem + ".png"))
        with Image.open(out / relative) as kmq, Image.open(image_path) as original:
            assert kmq.format == "KMQ" and kmq.size == original.size
            assert kmq.kmq_header.k <= 8
        bytes_in += image_path.stat().st_size
        bytes_out += (out / relative).stat().st_size
    printed = capsys.readouterr()
    assert summary_row(printed.out, "converted") == [
        "3",
        f"{bytes_in:,}",
        f"{bytes_out:,}",
        f"{bytes_out / bytes_in:.4f}",
    ]
    assert summary_row(printed.out, "skipped")[0] == "0"
    assert summary_row(printed.out, "failed")[0] == "0"
    assert printed.err == ""  # no progress bar when stderr is not a terminal


def test_file_given_directly_goes_to_dir_by_its_stem_with_the_save_options(
    tmp_path: Path,
) -> None:
    args = ["convert", str(SAMPLES / "kodim23.png"), "-o", str(tmp_path), "-q"]
    assert main([*args, "-k", "5", "--seed", "7", "--compression", "none"]) == 0
    with Image.open(SAMPLES / "kodim23.png") as image:
        expected = kmq_bytes(image, k=5, seed=7, compression="none")
    assert (tmp_path / "kodim23.kmq").read_bytes() == expected


def test_existing_outputs_are_skipped_unless_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = tree(tmp_path), tmp_path / "out"
    command = ["convert", str(source), "-o", str(out), "-k", "4", "-j", "1"]
    assert main(command) == 0
    (out / "ihc.kmq").write_bytes(b"precious")
    capsys.readouterr()
    assert main(command) == 0
    printed = capsys.readouterr()
    assert (out / "ihc.kmq").read_bytes() == b"precious"
    assert summary_row(printed.out, "skipped")[0] == "3"
    assert summary_row(printed.out, "converted")[:3] == ["0", "0", "0"]
    assert f"kmq: skipped {source / 'ihc.png'}: {out / 'ihc.kmq'} exists" in printed.err
    assert main([*command, "--force"]) == 0
    assert (out / "ihc.kmq").read_bytes().startswith(b"\x89KMQ")
    assert summary_row(capsys.readouterr().out, "converted")[0] == "3"


def test_skip_if_larger_writes_no_kmq_bigger_than_its_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Image.open(SAMPLES / "ihc.png") as image:
        image.convert("RGB").save(tmp_path / "small.jpg", quality=20)
    shutil.copy(SAMPLES / "ihc.png", tmp_path / "big.png")
    with Image.open(tmp_path / "small.jpg") as jpeg:
        assert (
            len(kmq_bytes(jpeg, k=64)) >= (tmp_path / "small.jpg").stat().st_size
        )  # the case holds
    out = tmp_path / "out"
    assert (
        main(
            [
                "convert",
                str(tmp_path),
                "-o",
                str(out),
                "-k",
                "64",
                "-j",
                "1",
                "--skip-if-larger",
            ]
        )
        == 0
    )
    assert files_under(out) == ["big.kmq"]
    printed = capsys.readouterr()
    assert (
        "small.jpg: KMQ would be" in printed.err
        and "not smaller than the input's" in printed.err
    )
    assert summary_row(printed.out, "converted")[0] == "1"
    assert summary_row(printed.out, "skipped")[0] == "1"
    assert (
        main(["convert", str(tmp_path / "small.jpg"), "-o", str(out), "-k", "64", "-q"])
        == 0
    )
    assert (out / "small.kmq").exists()  # without the option it is written


def test_two_inputs_for_one_output_is_an_error_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(SAMPLES / "kodim23.png", source / "a.png")
    with Image.open(SAMPLES / "kodim23.png") as image:
        image.save(source / "a.jpg")
    out = tmp_path / "out"
    assert main(["convert", str(source), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"kmq: error: {source / 'a.jpg'} and {source / 'a.png'} would both be written to {out / 'a.kmq'} (--keep-suffix names them by their whole names)\n"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file or directory"),
        (lambda p: p.mkdir(), "no images found to convert"),
    ],
)
def test_missing_or_empty_input_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, message: str
) -> None:
    make(tmp_path / "in")  # type: ignore[operator]
    assert main(["convert", str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_plan_names_each_file_once_and_never_enters_the_output_directory(
    tmp_path: Path,
) -> None:
    source = tree(tmp_path)
    out = source / "kmq"  # inside the input tree
    out.mkdir()
    shutil.copy(SAMPLES / "ihc.png", out / "earlier.png")
    jobs = batch.plan_jobs([source, source / "ihc.png"], out, batch.save_options(k=3))
    assert [(j.input.relative_to(source), j.output.relative_to(out)) for j in jobs] == [
        (Path("ihc.png"), Path("ihc.kmq")),
        (Path("sub/kodim23.png"), Path("sub/kodim23.kmq")),
        (Path("sub/deeper/kodim03-p12.png"), Path("sub/deeper/kodim03-p12.kmq")),
    ]
    assert jobs[0].options == {"k": 3, "seed": 0, "compression": "auto"}
    with pytest.raises(batch.PlanError, match="is the input itself"):
        batch.plan_jobs([source / "sub" / "old.kmq"], source / "sub")


def test_save_options_pass_psnr_and_dither_only_when_given() -> None:
    assert batch.save_options() == {"k": 16, "seed": 0, "compression": "auto"}
    assert batch.save_options(psnr=30.0, dither=True) == {
        "psnr": 30.0,
        "dither": True,
        "seed": 0,
        "compression": "auto",
    }
    with pytest.raises(ValueError, match="not both"):
        batch.save_options(k=4, psnr=30.0)


def test_one_bad_file_fails_alone_and_the_exit_status_is_1(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(SAMPLES / "kodim23.png", source / "good.png")
    (source / "cut.png").write_bytes((SAMPLES / "ihc.png").read_bytes()[:3000])
    (source / "text.png").write_text("hello")
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pil_kmq",
            "convert",
            str(source),
            "-o",
            str(out),
            "-k",
            "4",
            "-j",
            "2",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    errors = result.stderr.splitlines()
    assert len(errors) == 3 and "Traceback" not in result.stderr
    assert (
        f"kmq: error: {source / 'text.png'}: not an image format Pillow can read"
        in errors
    )
    assert any(
        line.startswith(f"kmq: error: {source / 'cut.png'}: ") for line in errors
    )
    assert errors[-1] == "kmq: error: 2 of 3 files failed"
    assert files_under(out) == ["good.kmq"]
    assert summary_row(result.stdout, "failed")[:2] == ["2", f"{3000 + 5:,}"]


def test_alpha_images_convert_or_fail_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Alpha modes are being made saveable; until then each one is a failure of its own file."""
    Image.new("RGBA", (8, 8), (10, 20, 30, 128)).save(tmp_path / "alpha.png")
    shutil.copy(SAMPLES / "kodim23.png", tmp_path / "plain.png")
    status = main(
        ["convert", str(tmp_path), "-o", str(tmp_path / "out"), "-j", "1", "-q"]
    )
    assert (tmp_path / "out" / "plain.kmq").exists()
    err = capsys.readouterr().err
    if status == 1:
        assert f"kmq: error: {tmp_path / 'alpha.png'}: " in err and "RGBA" in err
    else:
        assert status == 0 and err == ""


def test_process_pool_writes_the_bytes_of_an_in_process_run(tmp_path: Path) -> None:
    inputs = [str(SAMPLES / name) for name in PNGS]
    assert (
        main(
            [
                "convert",
                *inputs,
                "-o",
                str(tmp_path / "one"),
                "-k",
                "12",
                "-j",
                "1",
                "-q",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "convert",
                *inputs,
                "-o",
                str(tmp_path / "two"),
                "-k",
                "12",
                "-j",
                "2",
                "-q",
            ]
        )
        == 0
    )
    names = files_under(tmp_path / "one")
    assert (
        names
        == ["ihc.kmq", "kodim03-p12.kmq", "kodim23.kmq"]
        == files_under(tmp_path / "two")
    )
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (
            tmp_path / "two" / name
        ).read_bytes()


def test_run_jobs_takes_any_executor_and_returns_results_in_job_order(
    tmp_path: Path,
) -> None:
    jobs = batch.plan_jobs(
        [SAMPLES / name for name in PNGS], tmp_path, batch.save_options(k=6)
    )
    assert (
        pickle.loads(pickle.dumps(jobs)) == jobs
    )  # small records any executor can ship
    seen: list[batch.Result] = []
    with ThreadPoolExecutor(2) as executor:
        results = batch.run_jobs(jobs, executor, on_result=seen.append)
    assert [r.input for r in results] == [j.input for j in jobs]
    assert sorted(seen, key=lambda r: r.input) == sorted(results, key=lambda r: r.input)
    assert all(r.status == batch.Status.CONVERTED for r in results)
    for result in results:
        assert result.bytes_in == result.input.stat().st_size
        assert result.bytes_out == result.output.stat().st_size
    assert pickle.loads(pickle.dumps(results)) == results


class _DeadWorkers(Executor):
    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future[object] = Future()
        future.set_exception(RuntimeError("worker lost"))
        return future


def test_an_executor_failure_is_that_file_failing(tmp_path: Path) -> None:
    jobs = batch.plan_jobs([SAMPLES / "kodim23.png"], tmp_path)
    (result,) = batch.run_jobs(jobs, _DeadWorkers())
    assert (
        result.status == batch.Status.FAILED
        and result.message == "RuntimeError: worker lost"
    )


def test_a_failed_write_leaves_the_old_output_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "kodim23.kmq").write_bytes(b"precious")
    monkeypatch.setattr(atomic, "open_partial", failing_output(OSError(28, "No space left on device")))
    command = [
        "convert",
        str(SAMPLES / "kodim23.png"),
        "-o",
        str(out),
        "-j",
        "1",
        "--force",
    ]
    assert main(command) == 1
    assert (
        f"kodim23.png: cannot write {out / 'kodim23.kmq'}: No space left on device"
        in capsys.readouterr().err
    )
    assert files_under(out) == ["kodim23.kmq"]
    assert (out / "kodim23.kmq").read_bytes() == b"precious"


def test_ctrl_c_stops_cleanly_with_whole_outputs_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "ihc.kmq").write_bytes(b"precious")
    monkeypatch.setattr(atomic, "open_partial", failing_output(KeyboardInterrupt()))
    inputs = [str(SAMPLES / name) for name in PNGS]
    assert main(["convert", *inputs, "-o", str(out), "-j", "1", "--force", "-q"]) == 130
    assert files_under(out) == [
        "ihc.kmq"
    ]  # the interrupted file intact, nothing after it started
    assert (out / "ihc.kmq").read_bytes() == b"precious"


def test_keep_suffix_converts_two_images_of_one_stem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    with Image.open(SAMPLES / "kodim23.png") as image:
        image.save(folder / "x.png")
        image.convert("RGB").save(folder / "x.jpg")
    assert main(["convert", str(folder), "-o", str(tmp_path / "out"), "-k", "4", "-j", "1", "-q"]) == 1
    assert "--keep-suffix names them by their whole names" in capsys.readouterr().err
    assert main(["convert", str(folder), "-o", str(tmp_path / "out"), "-k", "4", "-j", "1", "-q", "--keep-suffix"]) == 0
    assert files_under(tmp_path / "out") == ["x.jpg.kmq", "x.png.kmq"]


def test_k_and_psnr_are_mutually_exclusive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "convert",
                str(SAMPLES / "ihc.png"),
                "-o",
                str(tmp_path),
                "-k",
                "4",
                "--psnr",
                "30",
            ]
        )
    assert exit_info.value.code == 2
    assert "argument --psnr: not allowed with argument -k" in capsys.readouterr().err
    for bad in ("0", "-3", "nan", "loud"):
        with pytest.raises(SystemExit):
            main(
                [
                    "convert",
                    str(SAMPLES / "ihc.png"),
                    "-o",
                    str(tmp_path),
                    "--psnr",
                    bad,
                ]
            )
        assert (
            f"psnr must be a positive number of decibels, not '{bad}'"
            in capsys.readouterr().err
        )
    assert not any(tmp_path.iterdir())


def _psnr(original: Image.Image, decoded: Image.Image) -> float:
    a = np.asarray(original.convert("RGB"), dtype=np.float64)
    b = np.asarray(decoded.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def test_psnr_option_saves_the_smallest_k_reaching_it(tmp_path: Path) -> None:
    assert (
        main(
            [
                "convert",
                str(SAMPLES / "ihc.png"),
                "-o",
                str(tmp_path),
                "--psnr",
                "35",
                "-q",
            ]
        )
        == 0
    )
    data = (tmp_path / "ihc.kmq").read_bytes()
    with Image.open(SAMPLES / "ihc.png") as image, Image.open(io.BytesIO(data)) as kmq:
        assert data == kmq_bytes(image, psnr=35.0)
        assert _psnr(image, kmq) >= 35  # k = 16, the default, gives 31.4 dB
        assert kmq.kmq_header.k > 16


def test_dither_option_is_passed_to_the_encoder(tmp_path: Path) -> None:
    command = [
        "convert",
        str(SAMPLES / "kodim23.png"),
        "-k",
        "6",
        "-q",
        "-j",
        "1",
        "-o",
    ]
    assert main([*command, str(tmp_path / "plain")]) == 0
    assert main([*command, str(tmp_path / "dithered"), "--dither"]) == 0
    dithered = (tmp_path / "dithered" / "kodim23.kmq").read_bytes()
    with Image.open(SAMPLES / "kodim23.png") as image:
        assert dithered == kmq_bytes(image, k=6, dither=True)
    assert dithered != (tmp_path / "plain" / "kodim23.kmq").read_bytes()


def test_quiet_prints_errors_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.png").write_text("no")
    inputs = [str(SAMPLES / "kodim23.png"), str(tmp_path / "bad.png")]
    assert main(["convert", *inputs, "-o", str(tmp_path), "-q", "-j", "1"]) == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert re.fullmatch(
        r"kmq: error: .*bad\.png: not an image format Pillow can read\nkmq: error: 1 of 2 files failed\n",
        printed.err,
    )


def _interrupting_task(job: batch.Job) -> batch.Result:
    """Converts, sending this process Ctrl-C while at it (as a user pressing it mid-file)."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGINT)
    return batch.convert_file(job)


def test_ctrl_c_in_process_stops_the_file_at_once(tmp_path: Path) -> None:
    jobs = batch.plan_jobs([tree(tmp_path / "in")], tmp_path / "out", batch.save_options(k=4))
    seen: list[batch.Result] = []
    with pytest.raises(KeyboardInterrupt):
        batch.run_jobs(jobs, workers=1, on_result=seen.append, task=_interrupting_task)
    assert seen == [] and files_under(tmp_path / "out") == []  # not finished first, as pngquant does not


def test_sigterm_stops_convert_as_ctrl_c_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """kill or timeout: the file being written is removed, exit status 128 + SIGTERM."""
    import os
    import signal

    def terminated(*args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the conversion")

    monkeypatch.setattr(atomic, "open_partial", terminated)
    out = tmp_path / "out"
    before = signal.getsignal(signal.SIGTERM)
    assert main(["convert", str(SAMPLES / "kodim23.png"), "-o", str(out), "-k", "4", "-j", "1", "-q"]) == 143
    assert "kmq: terminated" in capsys.readouterr().err
    assert files_under(out) == []
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler back


_SLOW_TASK = """
import ctypes, os, time
from pathlib import Path
from pil_kmq import batch
from pil_kmq.atomic import write_atomic

def slow(job):
    Path(str(job.output) + ".pid").write_text(str(os.getpid()))
    ctypes.CDLL(None).system(b"sleep 2")  # a long C call, deaf to signals, as a compiled kernel is
    time.sleep(60)
    write_atomic(job.output, b"late")
    return batch.Result(job.input, job.output, 1, 4, batch.Status.CONVERTED, "")

if __name__ == "__main__":
    import sys
    out = Path(sys.argv[1])
    jobs = [batch.Job(Path(f"in{number}.png"), out / f"{number}.kmq") for number in range(4)]
    try:
        results = batch.run_jobs(jobs, workers=2, task=__import__("slow_task").slow)
    except KeyboardInterrupt:
        sys.exit(130)
    print("\\n".join(f"{result.status} {result.message}" for result in results))
"""


@pytest.mark.parametrize("how", ["SIGINT", "SIGINT twice", "SIGKILL", "SIGTERM to a worker"])
def test_a_stopped_pool_leaves_no_worker_converting(tmp_path: Path, how: str) -> None:
    """Ctrl-C stops the pool's running conversions at once (not after they finish), and so
    does a second one during that stop (once it hung the command); a killed parent's workers
    end too (they would otherwise convert on, orphaned, and write); a worker stopped on its own
    fails its file, and the files the broken pool cannot start, not the whole run."""
    import os
    import signal
    import time

    (tmp_path / "slow_task.py").write_text(_SLOW_TASK)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, str(tmp_path / "slow_task.py"), str(out)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("*.pid"))) < 2:
            assert time.monotonic() < deadline and process.poll() is None, "the workers did not start"
            time.sleep(0.05)
        workers = [int(path.read_text()) for path in out.glob("*.pid")]
        if how == "SIGTERM to a worker":
            os.kill(workers[0], signal.SIGTERM)
            printed, _ = process.communicate(timeout=20)
            assert process.returncode == 0 and printed.count("failed") == 4, printed
            assert "the worker process converting it was stopped (exit status 143)" in printed
        else:
            process.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGINT)
            if how == "SIGINT twice":
                time.sleep(0.2)
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)
            assert process.wait(timeout=20) in ((-signal.SIGKILL,) if how == "SIGKILL" else (130, -signal.SIGINT))
    finally:
        process.kill()
        process.communicate()
    workers += [int(path.read_text()) for path in out.glob("*.pid")]  # any that started since
    deadline = time.monotonic() + batch.ORPHAN_GRACE_SECONDS + 5
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)
    assert not list(out.glob("*.kmq"))  # no output written


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_any_exception_from_one_file_fails_that_file_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = batch.plan_jobs([tree(tmp_path / "in")], tmp_path / "out", batch.save_options(k=4))
    real_open = Image.open

    def flaky_open(path: object, *args: object, **kwargs: object) -> Image.Image:
        if Path(str(path)) == jobs[0].input:
            raise RuntimeError("a decoder bug")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(batch.Image, "open", flaky_open)
    results = batch.run_jobs(jobs, workers=1)
    assert results[0].status == batch.Status.FAILED and "a decoder bug" in results[0].message
    assert all(result.status == batch.Status.CONVERTED for result in results[1:])


def test_multi_frame_input_is_converted_with_a_note(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "green", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    (result,) = batch.run_jobs(batch.plan_jobs([tmp_path / "anim.gif"], tmp_path / "out", batch.save_options(k=4)), workers=1)
    assert result.status == batch.Status.CONVERTED and "first of its 3 frames" in result.message


def test_plan_jobs_takes_one_path_as_one_and_checks_options_first(tmp_path: Path) -> None:
    """A str is iterable: its first character, '/', was planned as a folder (every image on the
    disk). A bad option failed every image after reading it, not before the first."""
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(SAMPLES / "ihc.png", source / "a.png")
    for one in (str(source / "a.png"), source / "a.png"):
        assert [job.input for job in batch.plan_jobs(one, tmp_path / "out")] == [source / "a.png"]
    with pytest.raises(ValueError, match="k must be an int"):
        batch.plan_jobs([source], tmp_path / "out", {"k": 0})
    with pytest.raises(ValueError, match="compression must be one of"):
        batch.save_options(k=8, compression="lzma")
    with pytest.raises(ValueError, match="give k or psnr"):
        batch.save_options(k=8, psnr=30)
