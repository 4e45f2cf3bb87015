"""Where cells run: here, one after the other (:class:`SerialRunner`), or as Ray tasks on this
machine's cores or on a cluster (:class:`RayRunner`). Both call :func:`execute`, the one code path
of a cell, retry a failing cell once, and yield each cell's outcome as it finishes.

Why plain Ray tasks and not Ray Tune: measured on this project's 2-core machine (Ray 2.60),
a Tune grid of 16 trials that do nothing took 23 s, about 1.4 s per trial of trial actors,
checkpoint and result files, against 0.35 s for 16 Ray tasks (0.02 s once the workers are warm):
over a 10-s cell Tune alone would cost ~14 %, three times the 5 % budget, and it would keep a
second results tree beside the store. What Tune would add we have otherwise: the grid is
:func:`initlab.sweep.grid.expand`, retries are the tasks' ``max_retries=1`` (a dead worker) with
``retry_exceptions=True`` (an error), resuming is the store (finished cells are skipped before
anything is launched, so there is no experiment state to restore), and the results table is the
store's Parquet files. Ray is imported only here and only when a :class:`RayRunner` is made.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from initlab.errors import InitlabError

__all__ = ["Outcome", "execute", "SerialRunner", "RayRunner", "ray_available", "check_address",
           "INSTALL_HINT"]

#: The one line that says how to get the sweep extra.
INSTALL_HINT = "pip install 'initlab[sweep]'"

#: Attempts after the first for a cell that fails (raises, or its worker dies).
RETRIES = 1

#: The end of every message about a bad ``--address``: the forms it takes.
ACCEPTED_ADDRESSES = ("give auto (the Ray cluster running on this machine), HOST:PORT (e.g. head:6379) or "
                      "ray://HOST:PORT (e.g. ray://head:10001)")

#: Seconds :func:`check_address` waits for a cluster's address to resolve and to accept a connection.
CONNECT_TIMEOUT_S = 5.0


@dataclass
class Outcome:
    """A finished cell: its ``key``, ``records`` (``None`` if it failed), the ``error`` line of its
    last attempt, and ``run`` facts (``seconds``; ``started`` and ``ended``, Unix times; ``host``,
    ``pid``)."""

    key: str
    records: list[dict[str, Any]] | None
    error: str | None = None
    run: dict[str, Any] = field(default_factory=dict)


def error_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters).

    >>> error_line(ValueError("bad\\nvalue"))
    'ValueError: bad'
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]


def execute(run: Callable[[Any], list[dict[str, Any]]], config: Any,
            versions: dict[str, Any]) -> dict[str, Any]:
    """Run one cell in this process: ``run(config)``, timed. Every runner calls this.

    Raises:
        InitlabError: this process has other initlab or torch versions than the ones the cell
            was keyed with (a cluster node with other software).
        Whatever ``run`` raises.
    """
    from initlab.sweep.grid import code_versions

    here = code_versions()
    if here != versions:
        raise InitlabError(f"this worker runs {here}, the sweep was keyed with {versions}: install the same "
                           "initlab and torch on every node")
    started, t0 = time.time(), time.perf_counter()
    records = run(config)
    return {"records": records, "run": {"seconds": time.perf_counter() - t0, "started": started,
                                        "ended": time.time(), "host": socket.gethostname(),
                                        "pid": os.getpid()}}


class SerialRunner:
    """Cells one after the other in this process (no Ray needed). A cell that raises is tried
    once more, then reported as failed; a crash of the process itself ends the sweep (resume it by
    running it again)."""

    name = "serial"

    def run(self, run: Callable[[Any], list[dict[str, Any]]], cells: Sequence[Any], versions: dict[str, Any]
            ) -> Iterator[Outcome]:
        """Yield one :class:`Outcome` per cell, in order."""
        for cell in cells:
            error = None
            for _ in range(1 + RETRIES):
                try:
                    done = execute(run, cell.config, versions)
                except Exception as exc:  # noqa: BLE001 - a failing cell is a result, not the end
                    error = error_line(exc)
                    continue
                yield Outcome(cell.key, done["records"], None, done["run"])
                break
            else:
                yield Outcome(cell.key, None, error)

    def close(self) -> None:
        """Nothing to release."""

    def describe(self) -> str:
        """One line for the log."""
        return "serial (this process)"


def ray_available() -> bool:
    """Whether Ray can be imported (``pip install 'initlab[sweep]'``)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


@contextmanager
def _keep_signal_handlers() -> Iterator[None]:
    """Put this process's Python handlers of SIGTERM and SIGINT back after the block: ``ray.init``
    installs its own (native) SIGTERM handler, which would end the driver at once instead of
    letting ``initlab sweep`` cancel its tasks and say how to resume."""
    import signal
    import threading

    names = [n for n in ("SIGTERM", "SIGINT") if hasattr(signal, n)]
    main = threading.current_thread() is threading.main_thread()
    saved = {n: signal.getsignal(getattr(signal, n)) for n in names} if main else {}
    try:
        yield
    finally:
        for n, handler in saved.items():
            if callable(handler):
                signal.signal(getattr(signal, n), handler)


def _host_port(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` or ``ray://HOST:PORT`` (an IPv6 host in brackets).

    >>> _host_port("ray://head:10001"), _host_port("[::1]:6379")
    (('head', 10001), ('::1', 6379))
    """
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InitlabError(f"--address {address} is invalid: {ACCEPTED_ADDRESSES}")
    return host, int(port)


def _resolve(host: str, port: int, timeout: float) -> list:
    """``socket.getaddrinfo`` in a thread, given up on after ``timeout`` seconds (a lookup cannot
    be given a timeout of its own)."""
    import threading

    found: dict[str, Any] = {}

    def look() -> None:
        try:
            found["addrs"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            found["error"] = exc

    thread = threading.Thread(target=look, daemon=True)
    thread.start()
    thread.join(timeout)
    if "addrs" in found:
        return found["addrs"]
    raise found.get("error") or TimeoutError(f"no answer in {timeout:g} s")


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse, within ``timeout`` seconds, the address of a Ray cluster that nothing answers at:
    resolve its host and open a TCP connection to its port (``auto`` and ``local`` are left to
    Ray, which fails at once when no cluster runs here; a scheme other than ``ray://``, such as
    ``http://``, is refused).

    Why before ``ray.init``: given ``HOST:PORT`` where nothing listens, ``ray.init`` does not fail;
    its GCS client waits 5 s for the connection and 30 s for the cluster's ID, logging a warning
    each time, and the driver tries that ``RAY_NUM_REDIS_GET_RETRIES`` (20) times, minutes in all.
    Those are Ray's internal settings, read when Ray is imported and not ``ray.init`` options, so
    the address is checked here instead. A port that answers but is not Ray's still makes Ray wait.

    Raises:
        InitlabError: a malformed address (a scheme other than ``ray://``, no port), an unknown
            host, or no answer at the port (the message names the address and the forms it takes).
    """
    if address in ("auto", "local"):
        return
    if "://" in address and not address.startswith("ray://"):
        raise InitlabError(f"--address {address} is invalid: {ACCEPTED_ADDRESSES}")
    host, port = _host_port(address)
    try:
        addrs = _resolve(host, port, timeout)
    except OSError as exc:
        raise InitlabError(f"cannot reach Ray at {address}: host {host!r} is unknown ({error_line(exc)}): "
                           "check --address (auto, HEAD:6379, ray://HEAD:10001)") from None
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in addrs:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(sockaddr)
                return
            except OSError as exc:
                error = exc
    raise InitlabError(f"cannot reach Ray at {address}: nothing answers at port {port} of {host} "
                       f"({error_line(error or OSError('no address'))}): start Ray there (ray start --head) "
                       "or check --address (auto, HEAD:6379, ray://HEAD:10001)")


def _ray_reason(exc: BaseException) -> str:
    """:func:`error_line` of an error of ``ray.init`` without the start of Ray's own list of fixes
    (a first line ending ``To fix this, either:``), which the one line would cut short.

    >>> _ray_reason(ValueError("bad address. To fix this, either:\\n- a\\n- b"))
    'ValueError: bad address'
    """
    return error_line(exc).partition(" To fix this")[0].rstrip(" :.")


def _ray_error(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return error_line(cause)
    name = type(exc).__name__
    if "Crash" in name or "Died" in name or "WorkerCrashed" in name:
        return f"{name}: the worker process died (twice)"
    return error_line(exc)


class RayRunner:
    """Cells as Ray tasks: on this machine (a new local Ray with ``cpus`` CPUs, default all) or on
    the cluster at ``address`` (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``). Each task
    reserves ``config.threads`` CPUs, is retried once if its worker dies or it raises
    (``max_retries=1, retry_exceptions=True``), and reports as soon as it finishes.

    A Ray that this process already started (``ray.init`` before) is used as it is and left
    running; one the runner started is shut down by :meth:`close`, which also cancels the tasks
    not yet finished (an interrupted sweep).

    Raises:
        InitlabError: Ray is not installed (the message says how to get it); Ray cannot be started
            or reached at ``address`` (:func:`check_address`: in seconds, before ``ray.init``).
            (:func:`initlab.sweep.engine.check_runner` refuses option clashes before.)
    """

    name = "ray"

    def __init__(self, address: str | None = None, cpus: int | None = None) -> None:
        if not ray_available():
            raise InitlabError(f"running on Ray needs Ray: {INSTALL_HINT} (or run serially: --serial)")
        if address is not None:
            check_address(address)  # Ray itself would retry an unreachable address for minutes
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import logging

        import ray

        self._ray = ray
        self._pending: list = []
        self.started = not ray.is_initialized()
        if self.started:
            kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
            if address is None:
                kwargs.update(address="local", num_cpus=cpus or os.cpu_count() or 1, include_dashboard=False)
                # Ray starts its workers at niceness 15, so on a machine whose cores the cells fill, the
                # driver and Ray's own daemons preempt them: measured (benchmarks/sweep_scaling.py, 2
                # cores, 16 cells of ~9 s) two cells at once took 10.1 s each at niceness 15 against 8.5 s
                # at 0 (serial: 8.8 s), and the 2-worker speed-up went from 1.59 to 1.89. The workers of
                # a local sweep are the user's job: run them at the driver's priority
                # (RAY_worker_niceness set by the user wins).
                os.environ.setdefault("RAY_worker_niceness", "0")
            else:
                kwargs["address"] = address
            with _keep_signal_handlers():
                try:
                    ray.init(**kwargs)
                except ConnectionError as exc:
                    if address == "auto" and "Could not find any running Ray" in str(exc):
                        raise InitlabError("--address auto: no Ray cluster runs on this machine: start one "
                                           "(ray start --head), give its address (HEAD:6379, "
                                           "ray://HEAD:10001), or drop --address for a local Ray") from None
                    raise InitlabError(f"cannot reach Ray at {address}: {_ray_reason(exc)}; --address: "
                                       f"{ACCEPTED_ADDRESSES}") from None
                except (RuntimeError, ValueError) as exc:
                    where = "this machine" if address is None else address
                    fix = "" if address is None else f"; --address: {ACCEPTED_ADDRESSES}"
                    raise InitlabError(f"cannot start or reach Ray at {where}: {_ray_reason(exc)}{fix}"
                                       ) from None
        self.address = address

    def describe(self) -> str:
        """One line for the log: where the cells run and on how many CPUs."""
        cpus = int(self._ray.cluster_resources().get("CPU", 0))
        return f"ray ({self.address or 'this machine'}, {cpus} CPUs)"

    def run(self, run: Callable[[Any], list[dict[str, Any]]], cells: Sequence[Any], versions: dict[str, Any]
            ) -> Iterator[Outcome]:
        """Submit every cell; yield their outcomes in the order they finish."""
        ray = self._ray
        remote = ray.remote(max_retries=RETRIES, retry_exceptions=True)(execute)
        run_ref = ray.put(run)
        versions_ref = ray.put(versions)
        by_ref = {}
        for cell in cells:
            ref = remote.options(num_cpus=max(1, getattr(cell.config, "threads", 1) or 1)).remote(
                run_ref, cell.config, versions_ref)
            by_ref[ref] = cell
        self._pending = list(by_ref)
        while self._pending:
            # poll, and wait in Python: an interrupt raised inside ray.wait comes out as a plain
            # KeyboardInterrupt, which would hide a SIGTERM
            done, self._pending = ray.wait(self._pending, num_returns=len(self._pending), timeout=0)
            if not done:
                time.sleep(0.05)
            for ref in done:
                cell = by_ref.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a failing cell is a result, not the end
                    yield Outcome(cell.key, None, _ray_error(exc))
                    continue
                yield Outcome(cell.key, result["records"], None, result["run"])

    def close(self) -> None:
        """Cancel unfinished tasks (a running one gets a ``KeyboardInterrupt``; its worker stays for
        the cluster's next tasks); shut Ray down if this runner started it."""
        ray = self._ray
        for ref in self._pending:
            try:
                ray.cancel(ref, force=False)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
        self._pending = []
        if self.started and ray.is_initialized():
            ray.shutdown()
