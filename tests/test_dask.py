"""kmq convert --dask and pil_kmq.batch on a real Dask LocalCluster: the bytes of a local run,
one failure per file (a dead worker's too), one error line for a scheduler out of reach."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import SAMPLES, kmq_bytes
from PIL import Image

from pil_kmq import batch
from pil_kmq.cli import main

if TYPE_CHECKING:
    from distributed import Client

pytest.importorskip("distributed")
import dask  # installed with distributed

PNGS = ("ihc.png", "kodim23.png", "kodim03-p12.png", "ihc-cutout.png")
CORRUPT = "cut.png"  # the first 3,000 bytes of ihc.png
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """One LocalCluster of 2 worker processes for the module; a task whose worker dies fails at
    once (allowed-failures 0: no retry on another worker)."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        batch.dask_client("local", workers=2, quiet=True) as client,
    ):
        yield client


def images(root: Path) -> Path:
    """root/in: four sample images (two in a subdirectory) and a PNG cut short."""
    source = root / "in"
    (source / "sub").mkdir(parents=True)
    for index, name in enumerate(PNGS):
        shutil.copy(SAMPLES / name, source / ("sub" if index % 2 else ".") / name)
    (source / CORRUPT).write_bytes((SAMPLES / "ihc.png").read_bytes()[:3000])
    return source


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def die_on_kodim23(job: batch.Job) -> batch.Result:
    """convert_file, except that the worker process dies at once on kodim23.png."""
    if job.input.name == "kodim23.png":
        os._exit(1)
    return batch.convert_file(job)


def convert_slowly(job: batch.Job) -> batch.Result:
    """convert_file after marking the job started (output.started) and sleeping 1 s."""
    job.output.with_suffix(".started").touch()
    time.sleep(1)
    return batch.convert_file(job)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_dask_writes_the_bytes_of_a_local_run_and_names_paths_as_given(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images(tmp_path)
    monkeypatch.chdir(tmp_path)  # relative paths: the workers' directory is another
    options = batch.save_options(k=12)
    local = batch.run_jobs(batch.plan_jobs(["in"], "local", options), workers=1)
    jobs = batch.plan_jobs(["in"], "dask", options)
    arrived: list[batch.Result] = []
    results = batch.run_on_dask(jobs, client, on_result=arrived.append)
    assert [(r.input, r.output) for r in results] == [(j.input, j.output) for j in jobs]
    assert all(not r.input.is_absolute() for r in results)
    assert sorted(map(str, arrived)) == sorted(map(str, results))
    assert [(r.status, r.bytes_in, r.bytes_out, r.message) for r in results] == [
        (r.status, r.bytes_in, r.bytes_out, r.message) for r in local
    ]
    assert [r.status for r in results].count(batch.Status.FAILED) == 1  # cut.png
    assert files_under(tmp_path / "dask") == files_under(tmp_path / "local")
    assert len(files_under(tmp_path / "dask")) == len(PNGS)
    again = batch.run_on_dask(jobs, client)  # outputs exist: skipped, named as given
    skipped = next(r for r in again if r.input == Path("in/ihc.png"))
    assert skipped.status == batch.Status.SKIPPED
    assert skipped.message == "dask/ihc.kmq exists (--force overwrites it)"


def test_a_worker_dying_on_one_file_fails_that_file_and_the_rest_convert(
    client: Client, tmp_path: Path
) -> None:
    source = images(tmp_path)
    jobs = batch.plan_jobs([source], tmp_path / "out", batch.save_options(k=12))
    results = batch.run_on_dask(jobs, client, task=die_on_kodim23)
    failed = {
        r.input.name: r.message for r in results if r.status == batch.Status.FAILED
    }
    assert failed.keys() == {"kodim23.png", CORRUPT}
    assert failed["kodim23.png"].startswith("the Dask worker converting it died")
    converted = [r for r in results if r.status == batch.Status.CONVERTED]
    assert len(converted) == len(PNGS) - 1
    for result in converted:
        assert result.output.stat().st_size == result.bytes_out
    assert not (tmp_path / "out" / "sub" / "kodim23.kmq").exists()


def test_kmq_convert_dask_local_prints_what_a_local_run_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = images(tmp_path)
    command = ["convert", str(source), "-k", "12", "-o"]
    assert main([*command, str(tmp_path / "local"), "-j", "1"]) == 1  # cut.png fails
    local = capsys.readouterr()
    dask_args = ["--dask", "local", "--dask-workers", "2"]
    assert main([*command, str(tmp_path / "dask"), *dask_args]) == 1
    printed = capsys.readouterr()
    assert printed.out == local.out  # the summary table
    assert printed.err == local.err  # one line for cut.png, one for the count, no log
    assert printed.err.splitlines()[-1] == "kmq: error: 1 of 5 files failed"
    assert files_under(tmp_path / "dask") == files_under(tmp_path / "local")


def test_kmq_convert_joins_a_running_scheduler_and_leaves_it_running(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = client.scheduler.address
    command = ["convert", str(SAMPLES / "kodim23.png"), "-o", str(tmp_path), "-k", "5"]
    assert main([*command, "--dask", address]) == 0
    assert ["converted", "1"] in [
        line.split()[:2] for line in capsys.readouterr().out.splitlines()
    ]
    with Image.open(SAMPLES / "kodim23.png") as image:
        assert (tmp_path / "kodim23.kmq").read_bytes() == kmq_bytes(image, k=5)
    assert client.submit(sum, [1, 2]).result(timeout=10) == 3  # the cluster still runs


def test_ctrl_c_cancels_what_has_not_started_and_lets_running_files_finish(
    tmp_path: Path,
) -> None:
    source, out = images(tmp_path), tmp_path / "out"
    (source / CORRUPT).unlink()  # each file started makes a KMQ file
    script = textwrap.dedent(f"""
        import signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from pil_kmq import batch
        from test_dask import convert_slowly
        jobs = batch.plan_jobs([{str(source)!r}], {str(out)!r})
        try:
            batch.convert_with_dask(jobs, "local", workers=1, task=convert_slowly)
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    out.mkdir()
    run = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(out.rglob("*.started")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: the client and the workers get it
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 130, err
    started = sorted(p.with_suffix(".kmq") for p in out.rglob("*.started"))
    assert len(started) == 1  # one worker, one file at a time
    assert sorted(out.rglob("*.kmq")) == started  # the running file finished, whole
    assert started[0].read_bytes().startswith(b"\x89KMQ")
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_scheduler_out_of_reach_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"tcp://127.0.0.1:{closed_port()}"
    with pytest.raises(batch.ClusterError, match="cannot reach the Dask scheduler"):
        batch.convert_with_dask(
            batch.plan_jobs([SAMPLES / "ihc.png"], tmp_path), address, timeout=0.5
        )
    out = tmp_path / "out"
    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        status = main(
            ["convert", str(SAMPLES / "ihc.png"), "-o", str(out), "--dask", address]
        )
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"kmq: error: cannot reach the Dask scheduler at {address}: Timed out"
    )
    assert err.count("\n") == 1
    assert not out.exists()  # nothing done before the cluster is there


def test_without_dask_the_error_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    command = ["convert", str(SAMPLES / "ihc.png"), "-o", str(tmp_path), "--dask"]
    assert main([*command, "local"]) == 1
    assert capsys.readouterr().err == (
        "kmq: error: converting on Dask needs dask.distributed: pip install 'pil_kmq[dask]'\n"
    )


def exit_status(argv: list[str]) -> int:
    """main's exit status, argparse's own (SystemExit) included."""
    try:
        return main(argv)
    except SystemExit as exit:
        return int(exit.code or 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--dask", "local", "-j", "2"],
            "argument -j/--jobs: not allowed with argument --dask",
        ),
        (["--dask-workers", "2"], "--dask-workers is for --dask local"),
        (
            ["--dask", "tcp://127.0.0.1:8786", "--dask-workers", "2"],
            "--dask-workers is for --dask local",
        ),
    ],
)
def test_dask_options_that_do_not_go_together_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    command = ["convert", str(SAMPLES / "ihc.png"), "-o", str(tmp_path / "out")]
    assert exit_status([*command, *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmq: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
