"""Batch conversion to KMQ: find the images, plan one job per file, run the jobs on any
`concurrent.futures.Executor`, and write every output atomically.

The per-file work, `convert_file`, is a top-level function from a small picklable `Job` to
a picklable `Result`, so any executor can run it: a process pool (the default), a thread
pool, or a cluster's. Nothing else is assumed of the executor. `run_on_dask` runs the jobs
on a Dask cluster (the optional extra `pil_kmq[dask]`), whose workers need the same file
system.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from PIL import Image

from .api import DEFAULT_COMPRESSION, DEFAULT_K, DEFAULT_SEED, check_compression, check_dither, check_k, check_psnr, check_psnr_loss, check_seed
from .atomic import SameFileError, write_atomic
from .modes import mode_hint, to_storable
from .plugin import EXTENSION, FORMAT, storable

if TYPE_CHECKING:
    from distributed import Client, WorkerPlugin

DASK_EXTRA = "pip install 'pil_kmq[dask]'"
# The address that starts a LocalCluster rather than joining a scheduler.
LOCAL = "local"
# Dask's setting that gives worker processes glibc's MALLOC_TRIM_THRESHOLD_.
NO_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


class PlanError(ValueError):
    """The inputs cannot be converted as asked (a missing path, two inputs for one output);
    raised before any work starts."""


class ClusterError(RuntimeError):
    """The Dask cluster cannot be used: its scheduler cannot be reached at the address."""


class Status(StrEnum):
    CONVERTED = "converted"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    """One file to convert: Image.save(output, "KMQ", **options), unless skipped."""

    input: Path
    output: Path
    options: dict[str, object] = field(default_factory=dict)
    force: bool = False  # overwrite an existing output; else skip the file
    skip_if_larger: bool = (
        False  # write nothing when the KMQ is not smaller than the input
    )
    convert: bool = False  # convert modes KMQ does not store by the rules of pil_kmq.modes


@dataclass(frozen=True)
class Result:
    """What became of one job. bytes_out is what was written: 0 unless converted."""

    input: Path
    output: Path
    bytes_in: int
    bytes_out: int
    status: Status
    message: str = ""


def save_options(
    k: int | None = None,
    psnr: float | None = None,
    dither: bool | None = None,
    seed: int = DEFAULT_SEED,
    compression: str = DEFAULT_COMPRESSION,
    psnr_loss: float | None = None,
) -> dict[str, object]:
    """The keyword options for Image.save(..., "KMQ"): k (default 16) or psnr, and dither and
    psnr_loss only when given; ValueError for a bad one, as Image.save would raise."""
    options: dict[str, object] = {"seed": seed, "compression": compression}
    if psnr is not None:
        options["psnr"] = psnr
    else:
        options["k"] = DEFAULT_K if k is None else k
    if dither is not None:
        options["dither"] = dither
    if psnr_loss is not None:
        options["psnr_loss"] = psnr_loss
    if k is not None and psnr is not None:
        raise ValueError("give k or psnr, not both")
    check_options(options)
    return options


def image_extensions() -> set[str]:
    """Lower-case file extensions Pillow can open, except KMQ's own."""
    extensions = (
        Image.registered_extensions()
    )  # loads every plugin, filling Image.OPEN too
    return {
        ext for ext, fmt in extensions.items() if fmt in Image.OPEN and ext != EXTENSION
    }


def image_files(
    directory: str | os.PathLike[str], exclude: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Files under directory, recursively and sorted, whose extension Pillow can open;
    the directory `exclude` (e.g. the output directory) is not entered."""
    extensions = image_extensions()
    skip = os.path.realpath(exclude) if exclude is not None else None
    found: list[Path] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(
            d for d in dirs if os.path.realpath(os.path.join(root, d)) != skip
        )
        found.extend(
            Path(root, name)
            for name in sorted(files)
            if Path(name).suffix.lower() in extensions
        )
    return found


# Image.save's checks for the options a job passes on, run once before any image is read.
_OPTION_CHECKS: dict[str, Callable[[object], object]] = {"k": check_k, "psnr": check_psnr, "seed": check_seed, "compression": check_compression, "dither": check_dither, "psnr_loss": check_psnr_loss}


def check_options(options: dict[str, object]) -> None:
    """ValueError naming the first bad KMQ save option: every image would fail with it."""
    if options.get("k") is not None and options.get("psnr") is not None:
        raise ValueError("give k or psnr, not both: psnr chooses k")
    for name, check in _OPTION_CHECKS.items():
        if options.get(name) is not None:
            check(options[name])


def plan_jobs(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    options: dict[str, object] | None = None,
    *,
    force: bool = False,
    skip_if_larger: bool = False,
    convert: bool = False,
    keep_suffix: bool = False,
) -> list[Job]:
    """One job per input image (`paths`: paths, or one path): a file goes to
    output_dir/<stem>.kmq, a directory's images to output_dir/<path relative to it>.kmq
    (`keep_suffix`: <name>.kmq, its extension kept, so that x.png and x.jpg part ways).
    PlanError for a missing path, or two inputs (or an input itself) at one output; ValueError
    for a bad save option, before any image is read."""
    options = dict(options or {"k": DEFAULT_K})
    check_options(options)
    if isinstance(paths, (str, os.PathLike)):  # one path, not its characters (a str is iterable)
        paths = [paths]
    output_dir = Path(output_dir)
    jobs: list[Job] = []
    taken: dict[str, Path] = {}  # output (normalized) -> input
    for path in paths:
        path = Path(path)
        if path.is_dir():
            pairs = [
                (file, _output_name(file.relative_to(path), keep_suffix))
                for file in image_files(path, exclude=output_dir)
            ]
        elif path.exists():
            pairs = [(path, _output_name(Path(path.name), keep_suffix))]
        else:
            raise PlanError(f"{path}: no such file or directory")
        for source, relative in pairs:
            target = output_dir / relative
            key = os.path.normcase(os.path.abspath(target))
            if key in taken:
                if os.path.samefile(taken[key], source):
                    continue  # the same file named twice
                hint = not keep_suffix and taken[key].suffix.lower() != source.suffix.lower()
                raise PlanError(
                    f"{taken[key]} and {source} would both be written to {target}"
                    + (" (--keep-suffix names them by their whole names)" if hint else "")
                )
            if os.path.exists(target) and os.path.samefile(target, source):
                raise PlanError(f"{source}: its output {target} is the input itself")
            taken[key] = source
            jobs.append(Job(source, target, options, force, skip_if_larger, convert))
    return jobs


def _output_name(relative: Path, keep_suffix: bool) -> Path:
    return relative.with_name(relative.name + EXTENSION) if keep_suffix else relative.with_suffix(EXTENSION)


def convert_file(job: Job) -> Result:
    """Convert one image to KMQ as the job says; every failure of this file is a FAILED result."""
    try:
        bytes_in = os.stat(job.input).st_size
    except OSError as error:
        return Result(job.input, job.output, 0, 0, Status.FAILED, _reason(error))
    if not job.force and os.path.lexists(job.output):
        return Result(
            job.input,
            job.output,
            bytes_in,
            0,
            Status.SKIPPED,
            f"{job.output} exists (--force overwrites it)",
        )
    encoded = io.BytesIO()
    try:
        # The save's warnings (metadata KMQ does not keep, ...) go in the file's note: a pool
        # process's own stderr would print them apart from the file they are about.
        with warnings.catch_warnings(record=True) as caught, Image.open(job.input) as image:
            warnings.simplefilter("always")
            image.load()
            frames = getattr(image, "n_frames", 1)
            if not storable(image.mode) and not job.convert:
                raise ValueError(mode_hint(image.mode))
            (to_storable(image) if job.convert else image).save(encoded, FORMAT, **job.options)
    except Exception as error:  # noqa: BLE001  whatever this file raises fails this file only
        return Result(job.input, job.output, bytes_in, 0, Status.FAILED, _reason(error))
    data = encoded.getvalue()
    if job.skip_if_larger and len(data) >= bytes_in:
        return Result(
            job.input,
            job.output,
            bytes_in,
            0,
            Status.SKIPPED,
            f"KMQ would be {len(data):,} bytes, not smaller than the input's {bytes_in:,}",
        )
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        # No-clobber unless --force: of two runs racing for one output, one writes it.
        write_atomic(job.output, data, overwrite=job.force, inputs=[job.input])
    except FileExistsError:
        return Result(job.input, job.output, bytes_in, 0, Status.SKIPPED, f"{job.output} exists (--force overwrites it)")
    except (OSError, SameFileError) as error:
        return Result(
            job.input,
            job.output,
            bytes_in,
            0,
            Status.FAILED,
            f"cannot write {job.output}: {_reason(error)}",
        )
    # KMQ holds one image, as PNG does: Pillow saves the first frame; say so.
    notes = [f"the first of its {frames} frames (KMQ holds one image)"] * (frames > 1)
    notes += dict.fromkeys(str(warning.message) for warning in caught)  # each once, in order
    return Result(job.input, job.output, bytes_in, len(data), Status.CONVERTED, "; ".join(notes))


def _reason(error: BaseException) -> str:
    if isinstance(error, Image.UnidentifiedImageError):
        return "not an image format Pillow can read"
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def run_jobs(
    jobs: Sequence[Job],
    executor: Executor | None = None,
    *,
    workers: int | None = None,
    on_result: Callable[[Result], None] | None = None,
    task: Callable[[Job], Result] = convert_file,
    in_flight: int | Callable[[], int] | None = None,
) -> list[Result]:
    """Run task (convert_file) over the jobs on the executor; results in job order, on_result
    called with each as it arrives. Without an executor: in this process for one worker, else a
    process pool of `workers` (default os.cpu_count()), shut down here. At most `in_flight`
    jobs are submitted at once (a callable is asked again as each result arrives); all when
    None. On KeyboardInterrupt (or any other error here) no new job starts and the pool's
    running jobs are stopped, their outputs not written (each output is whole or absent), and
    it re-raises."""
    report = on_result or (lambda result: None)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if executor is None and workers == 1:
        return _run_here(jobs, task, report)
    owned = executor is None
    if executor is None:
        executor = ProcessPoolExecutor(
            workers, mp_context=_process_context(), initializer=_pool_worker_setup
        )
        # Queued calls would still start after Ctrl-C: hand out one job per process at a time.
        in_flight = workers if in_flight is None else in_flight
    waiting = iter(enumerate(jobs))
    futures: dict[Future[Result], int] = {}  # submitted, not yet reported
    done: queue.SimpleQueue[Future[Result]] = queue.SimpleQueue()
    results_by_index: dict[int, Result] = {}
    try:
        while True:
            limit = len(jobs) if in_flight is None else _call_or_value(in_flight)
            for index, job in itertools.islice(
                waiting, max(0, max(1, limit) - len(futures))
            ):
                try:
                    future = executor.submit(task, job)
                except BrokenExecutor as error:  # a worker died: the files not yet started fail with it
                    results_by_index[index] = Result(job.input, job.output, 0, 0, Status.FAILED, _executor_failure(error))
                    report(results_by_index[index])
                    continue
                futures[future] = index
                future.add_done_callback(done.put)
            if not futures:
                break
            future = done.get()
            index = futures.pop(future)
            try:
                result = future.result()
            except (Exception, SystemExit) as error:  # noqa: BLE001  the executor's failure (a worker died or was stopped), not the file's
                job = jobs[index]
                result = Result(
                    job.input, job.output, 0, 0, Status.FAILED, _executor_failure(error)
                )
            results_by_index[index] = result
            report(result)
    except BaseException:
        for future in futures:
            future.cancel()
        if owned:
            with _interrupts_deferred():  # a second Ctrl-C here left the pool half shut, hanging at exit
                _stop_workers(executor)
                executor.shutdown(wait=True, cancel_futures=True)
        raise
    if owned:
        executor.shutdown(wait=True)
    return [results_by_index[index] for index in range(len(jobs))]


def _run_here(
    jobs: Sequence[Job], task: Callable[[Job], Result], report: Callable[[Result], None]
) -> list[Result]:
    """The jobs one after another in this process. Ctrl-C stops the file being converted at
    once, as the pool does: its output is written atomically, so it is whole or absent."""
    results: list[Result] = []
    for job in jobs:
        results.append(task(job))
        report(results[-1])
    return results


def _call_or_value(value: int | Callable[[], int]) -> int:
    return value() if callable(value) else value


def _executor_failure(error: BaseException) -> str:
    """Why the executor, not the file, failed: e.g. the worker converting it died."""
    if isinstance(error, SystemExit):  # _end_job's: someone sent the worker SIGTERM
        return f"the worker process converting it was stopped (exit status {error.code})"
    dask_scheduler = sys.modules.get("distributed.scheduler")
    if dask_scheduler is not None and isinstance(error, dask_scheduler.KilledWorker):
        tries = error.allowed_failures + 1
        return (
            f"the Dask worker converting it died ({tries} worker{'s' * (tries > 1)} tried; "
            "its log says why, e.g. out of memory)"
        )
    return f"{type(error).__name__}: {error}"


def _process_context() -> multiprocessing.context.BaseContext:
    """forkserver where there is one: forking this process (threads may run) is unsafe."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context(
        "forkserver" if "forkserver" in methods else "spawn"
    )


def _pool_worker_setup() -> None:
    """A pool process: one BLAS thread (the pool already runs a process per core, and a
    second thread each made -j 2 only 1.09x faster than -j 1), Ctrl-C left to the parent,
    SIGTERM (the parent stopping the pool) ending the running job, and the process gone when
    the parent is (killed, it would otherwise convert on, orphaned)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    _ignore_interrupts()
    signal.signal(signal.SIGTERM, _end_job)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="kmq-parent-watch", daemon=True).start()


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C (sent to the whole process group) to the parent, which stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# How long a worker gives its job to unwind (removing its output's temporary file) once SIGTERM
# has raised in it, before it exits; how long one whose parent died waits for that; and how
# long the parent waits before SIGKILL (a job deep in a compiled kernel sees no signal until it
# returns from it).
JOB_END_SECONDS = 0.5
ORPHAN_GRACE_SECONDS = 2.0
STOP_SECONDS = 3.0


def _end_job(signum: int, frame: object) -> None:
    """A worker's SIGTERM: end the job as an exception, so the output being written is removed,
    and then the process (the pool's own loop would catch the exception and take the next job)."""
    threading.Timer(JOB_END_SECONDS, os._exit, args=(128 + signum,)).start()
    raise SystemExit(128 + signum)


def _exit_with(sentinel: int) -> None:
    """Wait for the parent process to end, then stop this worker (a watcher thread's work)."""
    multiprocessing.connection.wait([sentinel])
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_GRACE_SECONDS)
    os._exit(1)


def _stop_workers(executor: Executor) -> None:
    """Stop a process pool's workers now, rather than wait for the files they convert: SIGTERM
    (each ends its job and exits, _end_job), then SIGKILL for any still there STOP_SECONDS later.
    The processes are an attribute of ProcessPoolExecutor's own (3.14's terminate_workers also
    shuts the pool down without waiting, and kills no worker that ignores the signal)."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    terminate = getattr(executor, "terminate_workers", None)
    if not processes and terminate is not None:  # should the attribute go, the public way
        with contextlib.suppress(Exception):
            terminate()
    for process in processes:
        with contextlib.suppress(Exception):  # one that has just ended
            process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM ignored while the pool is being stopped (a bounded wait): a second one
    interrupting the shutdown left its workers waiting for a message that never came. Only the
    main thread may set signal handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


# Dask: the same jobs as tasks on a cluster. dask.distributed is imported only here, on use.


def _distributed() -> ModuleType:
    """The dask.distributed package; ImportError naming the extra to install if it is missing."""
    try:
        import distributed
    except ImportError as error:
        raise ImportError(
            f"converting on Dask needs dask.distributed: {DASK_EXTRA}",
            name="distributed",
        ) from error
    return distributed


@contextlib.contextmanager
def dask_client(
    address: str = LOCAL,
    *,
    workers: int | None = None,
    timeout: float | None = None,
    quiet: bool = False,
) -> Iterator[Client]:
    """A Dask client: "local" starts a LocalCluster of `workers` processes (default the CPU
    count, one thread each) on loopback and closes it afterwards; any other address joins that
    scheduler (waiting up to `timeout` seconds, default Dask's connect timeout) and leaves the
    cluster running. quiet: Dask logs nothing here (each failure is in its Result anyway).
    ImportError without Dask; ClusterError if the scheduler cannot be reached."""
    distributed = _distributed()
    import dask

    log_level = logging.CRITICAL if quiet else logging.WARNING  # LocalCluster's default
    with contextlib.ExitStack() as stack:
        for handler in logging.getLogger("distributed").handlers if quiet else []:
            stack.callback(handler.setLevel, handler.level)
            handler.setLevel(log_level)
        if address == LOCAL:
            # The nannies set these in this process's environment for the workers they spawn.
            stack.callback(_restore_environ, dict(os.environ))
            # glibc given any trim threshold stops adapting it, and converting takes 1.7x
            # as long: Dask gives its workers one unless told None.
            with dask.config.set({NO_MALLOC_TRIM: None}):
                cluster = distributed.LocalCluster(
                    n_workers=workers or os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    # No dashboard, and the scheduler's HTTP server (metrics) on any free
                    # port, not 8787: another cluster may hold that.
                    dashboard_address=None,
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                    silence_logs=log_level,
                )
            stack.enter_context(cluster)
            client = stack.enter_context(distributed.Client(cluster))
            client.register_plugin(_interrupts_ignored())
            try:
                yield client
            except KeyboardInterrupt:
                _wait_until_idle(client)  # closing the cluster would kill running files
                raise
            return
        connect = {} if timeout is None else {"timeout": timeout}
        try:
            client = stack.enter_context(distributed.Client(address, **connect))
        except (OSError, ValueError) as error:  # refused, timed out, bad host or scheme
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address}: {error}"
            ) from None
        yield client


def _restore_environ(environ: dict[str, str]) -> None:
    for key in os.environ.keys() - environ.keys():
        del os.environ[key]
    os.environ.update(environ)


def _interrupts_ignored() -> WorkerPlugin:
    """A worker plugin: a local cluster's workers share the terminal, and leave Ctrl-C to the
    client (which cancels what has not started) as the process pool's workers do."""
    from distributed import WorkerPlugin

    class IgnoreInterrupts(WorkerPlugin):
        name = "pil_kmq-ignore-interrupts"

        def setup(self, worker: object) -> None:
            _ignore_interrupts()

    return IgnoreInterrupts()


def _wait_until_idle(client: Client) -> None:
    """Block until no worker runs a task: a cancelled task's thread runs on to its end (a
    worker that is gone runs nothing)."""
    while sum(client.run(_executing_count, on_error="ignore").values()):
        time.sleep(0.1)


def _executing_count(dask_worker: Any) -> int:
    return int(dask_worker.state.executing_count)


def run_on_dask(
    jobs: Sequence[Job],
    client: Client,
    *,
    on_result: Callable[[Result], None] | None = None,
    task: Callable[[Job], Result] = convert_file,
) -> list[Result]:
    """run_jobs on a Dask cluster, one task per file: paths are sent absolute, and at most one
    file per worker thread is submitted at a time, so a worker that dies takes no queued file
    with it and Ctrl-C leaves nothing queued. A dead worker fails its own file only."""
    # pure=False: converting writes a file, so a task's result is never reused.
    return run_jobs(
        jobs,
        client.get_executor(pure=False),
        on_result=on_result,
        task=functools.partial(_convert_absolute, task, Path.cwd()),
        in_flight=lambda: sum(client.nthreads().values()),
    )


def _convert_absolute(
    task: Callable[[Job], Result], directory: Path, job: Job
) -> Result:
    """task(job) with the job's relative paths taken from directory (the client's working
    directory; the worker's may differ); the result names the paths as the job does."""
    sent = replace(job, input=directory / job.input, output=directory / job.output)
    result = task(sent)
    message = result.message.replace(str(sent.output), str(job.output))
    message = message.replace(str(sent.input), str(job.input))
    return replace(result, input=job.input, output=job.output, message=message)


def convert_with_dask(
    jobs: Sequence[Job],
    address: str = LOCAL,
    *,
    workers: int | None = None,
    timeout: float | None = None,
    on_result: Callable[[Result], None] | None = None,
    task: Callable[[Job], Result] = convert_file,
) -> list[Result]:
    """Run the jobs on the Dask cluster at address ("local": a LocalCluster of `workers`
    processes, started and closed here), as run_on_dask(jobs, client)."""
    if not jobs:
        return []
    if address == LOCAL:
        workers = min(workers or os.cpu_count() or 1, len(jobs))
    with dask_client(address, workers=workers, timeout=timeout) as client:
        return run_on_dask(jobs, client, on_result=on_result, task=task)


@dataclass(frozen=True)
class Summary:
    """Counts and byte totals of a batch, per status."""

    files: dict[Status, int]
    bytes_in: dict[Status, int]
    bytes_out: int  # written, by the converted files

    @classmethod
    def of(cls, results: Iterable[Result]) -> Summary:
        files = dict.fromkeys(Status, 0)
        bytes_in = dict.fromkeys(Status, 0)
        bytes_out = 0
        for result in results:
            files[result.status] += 1
            bytes_in[result.status] += result.bytes_in
            bytes_out += result.bytes_out
        return cls(files, bytes_in, bytes_out)

    @property
    def ratio(self) -> float | None:
        """Bytes out / bytes in of the converted files."""
        converted_in = self.bytes_in[Status.CONVERTED]
        return self.bytes_out / converted_in if converted_in else None

    def __str__(self) -> str:
        lines = [
            f"{'':<10} {'files':>7} {'bytes in':>14} {'bytes out':>14} {'out/in':>8}"
        ]
        for status in Status:
            if status == Status.CONVERTED:
                out, ratio = (
                    f"{self.bytes_out:,}",
                    "-" if self.ratio is None else f"{self.ratio:.4f}",
                )
            else:
                out, ratio = "-", "-"
            lines.append(
                f"{status.value:<10} {self.files[status]:>7,} {self.bytes_in[status]:>14,} {out:>14} {ratio:>8}"
            )
        lines.append(
            f"{'total':<10} {sum(self.files.values()):>7,} {sum(self.bytes_in.values()):>14,}"
        )
        return "\n".join(lines)
