"""The product scaled out on one machine: N web (daphne), N pulse and N Celery worker processes on
one environment (a DATABASE_URL, a REDIS_URL such as a Redis Cluster's, a CELERY_BROKER_URL).

Shared by the topology test (tests/scale/test_topology.py) and the live benchmark (bench/live.py
--topology): it imports no Django, so a benchmark's parent process can use it as it is. Every
process is started in a session of its own and stop() ends them all (SIGTERM, then SIGKILL of
the whole group), also when a start failed half-way: use it as a context manager.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procfile_daphne_options() -> list[str]:
    """The options the Procfile's web process gives daphne, but for its address, port and app."""
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("web:"))
    words = shlex.split(line.removeprefix("web:"))
    options, i = [], 1  # words[0] is daphne
    while i < len(words):
        if words[i] in ("-b", "-p"):
            i += 2
            continue
        if not words[i].endswith(":application"):
            options.append(words[i])
        i += 1
    return options


@dataclass
class Process:
    name: str
    proc: subprocess.Popen
    port: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash: no clean exit, no goodbye to the others."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM to its group (a clean stop: a pulse leaves the pulse hash)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to its group, SIGKILL after `timeout` s (daphne may wait for open sockets)."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # what is left of the group (pool children)
        self.proc.wait(timeout=10)


class Topology:
    """Processes of the product on `env`; with `logs`, each one's output goes to
    `<logs>/<name>.log` (else nowhere)."""

    def __init__(self, env: dict[str, str], *, logs: Path | None = None) -> None:
        self.env = {**env, "PYTHONPATH": str(ROOT)}
        self.logs = logs
        self.webs: list[Process] = []
        self.pulses: list[Process] = []
        self.workers: list[Process] = []
        self._names = {kind: itertools.count(1) for kind in ("web", "pulse", "worker")}

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _output(self, name: str):
        if self.logs is None:
            return subprocess.DEVNULL
        self.logs.mkdir(parents=True, exist_ok=True)
        return (self.logs / f"{name}.log").open("ab")

    def _spawn(self, name: str, command: list[str], *, env=None, stdout=None) -> subprocess.Popen:
        output = self._output(name)
        try:
            return subprocess.Popen(
                command,
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdout=stdout or output,
                stderr=output if stdout else subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if output is not subprocess.DEVNULL:
                output.close()  # the child holds its own copy

    def start_web(self, *, port: int | None = None, options: tuple[str, ...] = ()) -> Process:
        """A daphne web process as the Procfile runs it, returned once /healthz answers."""
        port = port or free_port()
        daphne = str(Path(sys.executable).parent / "daphne")
        name = f"web-{next(self._names['web'])}"
        command = [daphne, "-b", "127.0.0.1", "-p", str(port), *procfile_daphne_options()]
        proc = self._spawn(name, [*command, *options, "config.asgi:application"])
        web = Process(name, proc, port)
        self.webs.append(web)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not web.alive():
                raise RuntimeError(f"{name} exited with {proc.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                return web  # it answers (a dependency may report itself degraded)
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{name} did not answer on port {port} within 60 s")

    def start_pulse(self, *, interval: float | None = None) -> Process:
        """A `manage.py pulse`, returned once it has said it runs (its output after that line
        goes to its log)."""
        name = f"pulse-{next(self._names['pulse'])}"
        command = [sys.executable, "manage.py", "pulse"]
        if interval is not None:
            command += ["--interval", str(interval)]
        proc = self._spawn(name, command, stdout=subprocess.PIPE)
        pulse = Process(name, proc)
        self.pulses.append(pulse)
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        first = proc.stdout.readline() if ready else b""
        if b"at once when idle" not in first:
            raise RuntimeError(f"{name} did not start: {first!r} (exit {proc.poll()})")
        sink = self._output(name)
        threading.Thread(target=_drain, args=(proc.stdout, sink), daemon=True).start()
        return pulse

    def start_worker(self, *, concurrency: int = 1, timeout: float = 60) -> Process:
        """A Celery worker on every queue (of the environment's CELERY_QUEUE_PREFIX), returned
        once it answers a ping through its broker."""
        from celery import Celery

        name = f"worker-{next(self._names['worker'])}"
        node = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
        prefix = self.env.get("CELERY_QUEUE_PREFIX", "")
        queues = ",".join(
            prefix + q for q in ("default", "followups", "rollups", "insights", "alerts")
        )
        command = [sys.executable, "-m", "celery", "-A", "config", "worker"]
        command += ["--concurrency", str(concurrency), "-Q", queues, "-n", node]
        command += ["--without-gossip", "--without-mingle", "--loglevel", "WARNING"]
        worker = Process(name, self._spawn(name, command), extra={"node": node})
        self.workers.append(worker)
        probe = Celery("probe", broker=self.env["CELERY_BROKER_URL"], set_as_current=False)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not worker.alive():
                    raise RuntimeError(f"{name} exited with {worker.proc.returncode}")
                if probe.control.ping(destination=[node], timeout=0.5):
                    return worker
            raise RuntimeError(f"{name} did not answer a ping within {timeout} s")
        finally:
            probe.close()

    def start_all(self, *, webs: int, pulses: int, workers: int = 0, **options) -> None:
        """Start them side by side (each waits for its own readiness; the cores are shared).
        `options`: pulse_interval, web_options."""
        interval = options.get("pulse_interval")
        web_options = options.get("web_options", ())
        starts = [lambda: self.start_web(options=web_options)] * webs
        starts += [lambda: self.start_pulse(interval=interval)] * pulses
        starts += [self.start_worker] * workers
        with ThreadPoolExecutor(len(starts)) as pool:
            for future in [pool.submit(start) for start in starts]:
                future.result()

    def stop(self, timeout: float = 10) -> None:
        """End every process started: SIGTERM to all at once, SIGKILL to what is left after
        `timeout` s."""
        processes = [*self.webs, *self.pulses, *self.workers]
        for process in processes:
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in processes:
            with contextlib.suppress(Exception):
                process.stop(timeout=max(0.0, deadline - time.monotonic()))


def _drain(stream, sink) -> None:
    with contextlib.suppress(OSError, ValueError):
        for line in stream:
            if sink is not subprocess.DEVNULL:
                sink.write(line)
                sink.flush()
    if sink is not subprocess.DEVNULL:
        sink.close()
