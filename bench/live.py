"""Benchmark: event-to-screen latency of the live dashboard for N open sockets, with two baselines.

What it starts: a scratch database `botflow_bench_live` (created, migrated, dropped), one org with a
bot, a signed-in user and an ingest key; one `pulse` process and, for each row, a fresh server:
- product: `daphne config.asgi:application` (session auth, the hub), while 200 events/s are
  ingested through the HTTP API (batches of 20 every 100 ms);
- channels: a bare Channels consumer that only forwards `group_send` frames (bench/
  baseline_channels.py on daphne, channels-redis core layer);
- websockets: plain `websockets` broadcasting each frame published on a Redis channel (the floor).
The baselines replay the exact frames (sizes, times) that pulse published in the product row of
the same N, so all three push the same bytes at the same rate.

N WebSocket clients are spread over `--procs` client processes (plain `websockets`, no
permessage-deflate: daphne does not negotiate it, so browsers get none either; frames are not
decoded). Each process opens its sockets all at once (a connect burst) and closes them all at once
at the end (a disconnect burst); failed handshakes and sockets closed by the server count as drops.

Latency, product: ingest request sent -> first frame received after it (includes the wait for
pulse's next tick, 150 ms by default, and the render). Fan-out latency, every setup: frame published to Redis
(or `group_send` called) -> that frame received. Server CPU is the server process's, client CPU
the sum of the client processes' (100% = one core), both over the measured window. `stale` is the
number of group members the server still reports after every client disconnected.

Bytes, every setup: `frames published` is the mean size x rate of the frames pulse published (the
baselines replay those); `recv frame` is the mean and p95 size of every frame the clients received
in the window (payload bytes, WebSocket framing left out), `per viewer` those bytes / connected
sockets / window seconds; `handshakes/s` is connected sockets / connect s (the connect burst).

Scaled out (`--topology 2x2`, issue 14): 2 web processes and 2 pulses on a private 3-master Redis
Cluster (started on free ports, tests/scale/cluster.py; Celery's broker is then the machine's
RabbitMQ, though this load sends no task), the clients split evenly across both web processes and
the ingest batches alternating between them; product row only (the baselines need one Redis).
The processes are started by tests/scale/topology.py, as in the topology test. Server CPU is then
the sum of both web processes'.

Run:  make bench-live BENCH_ARGS="--clients 100 1000 2000 --runs 3"
      make bench-live-cluster BENCH_ARGS="--clients 2000"   (--topology 2x2)
      (or: python -m config.launcher run -- python bench/live.py --clients 1000)
Targets (issue 4): p99 <= 250 ms at 1,000 clients with no drops; 2,000 clients per web process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from array import array
from bisect import bisect_right
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import redis
from scratch import ROOT, free_port, scratch_database, start, stop

from config.env import parse_redis_url
from tests.scale.cluster import RedisClusterNodes
from tests.scale.topology import Topology

BENCH_DB = "botflow_bench_live"
SETUPS = ("product", "channels", "websockets")
TOPOLOGIES = {"1x1": (1, 1), "2x2": (2, 2)}  # web processes x pulses
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
TICK = (
    0.15  # pulse's default interval; synthetic frames use it when there is no product row to replay
)


def setup(scratch) -> tuple[str, str]:
    script = (
        "from django.test import Client\n"
        "from django.contrib.auth import get_user_model\n"
        "from analytics.models import Organization, Bot, Membership\n"
        "from analytics.services.api_keys import api_key_create\n"
        "org = Organization.objects.create(slug='bench', name='Bench')\n"
        "Bot.objects.create(organization=org, slug='support-bot', name='Support', channel='web')\n"
        "user = get_user_model().objects.create_user('viewer', password='pw-bench-123')\n"
        "Membership.objects.create(organization=org, user=user, role='viewer')\n"
        "c = Client(); c.force_login(user)\n"
        "print(c.cookies['sessionid'].value)\n"
        "print(api_key_create(organization=org, name='bench', scopes='ingest').secret)\n"
    )
    out = scratch.manage(
        "shell", "-v", "0", "-c", script, capture_output=True, text=True
    ).stdout.split()
    return out[-2], out[-1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- load: ingest (product) and frame replay (baselines), each in a thread of the parent


def ingest_loop(ports: list[int], key: str, deadline: float, sent: list[float]) -> None:
    """Batches of 20 every 100 ms, to each web process in turn (a round-robin balancer)."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for port in ports]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    n = 0
    while time.time() < deadline:
        started = time.time()
        events = [
            {
                "id": str(uuid.uuid4()),
                "type": "message",
                "bot": "support-bot",
                "conversation": f"c{n % 50}",
                "direction": ("inbound", "outbound")[n % 2],
                "text": "Can I move my booking to Thursday?" if n % 2 == 0 else "Sure, done.",
                **({"response_time_ms": 500 + n % 700, "outcome": "success"} if n % 2 else {}),
            }
            for _ in range(20)
        ]
        conn = conns[n % len(conns)]
        n += 1
        conn.request(
            "POST", "/api/v1/events", body=orjson.dumps({"events": events}), headers=headers
        )
        conn.getresponse().read()
        sent.append(started)
        time.sleep(max(0.0, 0.1 - (time.time() - started)))


def redis_client(url: str):
    """A client of the live Redis (REDIS_URL; a cluster's nodes for redis+cluster://)."""
    target = parse_redis_url("REDIS_URL", url)
    if target.is_cluster:
        nodes = [redis.cluster.ClusterNode(h, p) for h, p in target.cluster_nodes]
        return redis.RedisCluster(startup_nodes=nodes)
    return redis.Redis.from_url(url)


def observe(redis_url: str, pattern: str, stop_event: threading.Event, out: list) -> None:
    """(time, frame) of every frame pulse publishes for the org: the replay source and the
    product's publish times for fan-out latency (on a cluster: one node hears every PUBLISH)."""
    client = redis.Redis.from_url(parse_redis_url("REDIS_URL", redis_url).node_url())
    pubsub = client.pubsub()
    pubsub.psubscribe(pattern)
    while not stop_event.is_set():
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message and message["type"] == "pmessage":
            out.append((time.time(), message["data"]))
    pubsub.close()


def replay(publish, frames: list[tuple[float, bytes]], started: float, sent: list[float]) -> None:
    """Send `frames` at their recorded offsets from `started` (publish is blocking)."""
    for offset, data in frames:
        time.sleep(max(0.0, started + offset - time.time()))
        sent.append(time.time())
        publish(data)


def channels_publisher(redis_url: str, prefix: str):
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[redis_url], prefix=prefix, capacity=1500, expiry=10)
    loop = asyncio.new_event_loop()

    def publish(data: bytes) -> None:
        loop.run_until_complete(
            layer.group_send("bench-baseline", {"type": "frame", "text": data.decode()})
        )

    def close() -> None:
        loop.run_until_complete(layer.flush())
        loop.close()

    return publish, close


# --- clients: N sockets over a few processes


def client_process(url: str, headers: dict, n: int, ramp: int, conn) -> None:
    asyncio.run(_clients(url, headers, n, ramp, conn))


async def _clients(url: str, headers: dict, n: int, ramp: int, conn) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    loop = asyncio.get_running_loop()
    failures: Counter[str] = Counter()

    async def open_one():
        try:
            return await connect(
                url,
                additional_headers=headers,
                compression=None,
                open_timeout=60,
                ping_interval=None,
                max_size=None,
            )
        except InvalidStatus as exc:
            failures[f"HTTP {exc.response.status_code}"] += 1
        except Exception as exc:  # noqa: BLE001 - every failed handshake is counted by kind
            failures[type(exc).__name__] += 1
        return None

    async def read(ws, stamps: array, sizes: array) -> str:
        stamp, size, now = stamps.append, sizes.append, time.time
        try:
            while True:
                frame = await ws.recv(decode=False)
                stamp(now())
                size(len(frame))
        except ConnectionClosed as exc:
            return f"closed {exc.rcvd.code if exc.rcvd else 1006}"

    started = time.time()
    opening = []
    for i in range(n):
        opening.append(asyncio.create_task(open_one()))
        if ramp and i % ramp == ramp - 1:
            await asyncio.sleep(0.1)
    sockets = [ws for ws in await asyncio.gather(*opening) if ws]
    conn.send(("connected", len(sockets), dict(failures), time.time() - started))
    stamps = [array("d") for _ in sockets]
    sizes = [array("I") for _ in sockets]
    readers = [
        asyncio.create_task(read(ws, t, s)) for ws, t, s in zip(sockets, stamps, sizes, strict=True)
    ]
    await loop.run_in_executor(None, conn.recv)  # "start"
    cpu = time.process_time()
    await loop.run_in_executor(None, conn.recv)  # "stop"
    cpu = time.process_time() - cpu
    closed_by_server = Counter(r.result() for r in readers if r.done())
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    conn.send(
        (
            "done",
            [s.tobytes() for s in stamps],
            [s.tobytes() for s in sizes],
            cpu,
            dict(closed_by_server),
        )
    )


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return (float("nan"),) * 3
    q = statistics.quantiles(values, n=100)
    return q[49] * 1000, q[94] * 1000, q[98] * 1000


def latencies(clients: list[array], sent: list[float], window: tuple[float, float]):
    """Per client and send time in the window: first frame received after it (and how many
    send times got no frame at all before the end)."""
    sends = [s for s in sent if window[0] <= s <= window[1] - 0.5]
    out, missing = [], 0
    for received in clients:
        for s in sends:
            i = bisect_right(received, s)
            if i < len(received):
                out.append(received[i] - s)
            else:
                missing += 1
    return out, missing


def received_sizes(clients: list[array], sizes: list[array], window: tuple[float, float]) -> array:
    """The size of every frame each client received in the window."""
    out = array("I")
    for received, size in zip(clients, sizes, strict=True):
        out.extend(size[bisect_right(received, window[0]) : bisect_right(received, window[1])])
    return out


# --- one row


class Server:
    def __init__(self, kind: str, scratch, args) -> None:
        self.kind, self.scratch, self.port = kind, scratch, free_port()
        self.prefix = scratch.env["LIVE_KEY_PREFIX"]
        self.webs: Topology | None = None
        if kind == "product":
            self.webs = Topology(scratch.env, logs=args.server_log)
            try:
                for _ in range(TOPOLOGIES[args.topology][0]):
                    self.webs.start_web(options=tuple(args.daphne_option or ()))
            except BaseException:
                self.webs.stop()
                raise
            self.procs = [web.proc for web in self.webs.webs]
            self.ports = [web.port for web in self.webs.webs]
            self.path = "/ws/o/bench/live/"
        elif kind == "channels":
            self.layer_prefix = f"{self.prefix}:asgi"
            env = {**scratch.env, "BENCH_LAYER_PREFIX": self.layer_prefix}
            daphne = str(Path(sys.executable).parent / "daphne")
            self.proc = subprocess.Popen(
                [
                    daphne,
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "bench.baseline_channels:application",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.path = "/"
        else:
            self.channel = f"{self.prefix}:floor"
            self.proc = start(
                scratch,
                sys.executable,
                str(ROOT / "bench" / "baseline_websockets.py"),
                str(self.port),
                scratch.env["REDIS_URL"],
                self.channel,
            )
            self.path = "/"
        if kind != "product":
            self.procs, self.ports = [self.proc], [self.port]
            wait_listening(self.port)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(proc.pid) for proc in self.procs)

    def stop(self) -> None:
        if self.webs is not None:
            self.webs.stop()
        else:
            stop(self.proc)

    def stale_members(self, client: redis.Redis) -> int | None:
        """Group members still reported once every client has gone (None: not observable)."""
        if self.kind == "channels":
            time.sleep(2)
            return client.zcard(f"{self.layer_prefix}:group:bench-baseline")
        if self.kind == "product":
            deadline = time.time() + 12  # the hub reports every 5 s
            while True:
                total = 0
                for key in client.scan_iter(f"{self.prefix}:{{presence}}:groups:*"):
                    total += sum(int(v) for v in client.hvals(key))
                if total == 0 or time.time() > deadline:
                    return total
                time.sleep(0.5)
        return None


def profile(args, pid: int, name: str, seconds: int) -> None:
    """py-spy samples the server for `seconds` in the background (collapsed stacks)."""
    spy = str(Path(sys.executable).parent / "py-spy")
    out = Path(args.profile) / f"{name}-{int(time.time())}.txt"
    subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(seconds),
            "-r",
            "200",
            "--format",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_listening(port: int) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"baseline server on port {port} did not start")


def run_row(kind: str, n: int, args, scratch, session: str, key: str, frames) -> dict:
    redis_url = scratch.env["REDIS_URL"]
    client = redis_client(redis_url)
    server = Server(kind, scratch, args)
    if args.profile:
        profile(args, server.procs[0].pid, f"{kind}-{n}-connect", 8)
    ctx = multiprocessing.get_context("spawn")
    procs, pipes = [], []
    shares = [n // args.procs + (1 if i < n % args.procs else 0) for i in range(args.procs)]
    for i, share in enumerate(shares):
        port = server.ports[i % len(server.ports)]  # client processes split across the webs
        url = f"ws://127.0.0.1:{port}{server.path}"
        headers = {}
        if kind == "product":
            headers = {"Cookie": f"sessionid={session}", "Origin": f"http://127.0.0.1:{port}"}
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=client_process,
            args=(url, headers, share, args.ramp // args.procs, child),
            daemon=True,
        )
        proc.start()
        procs.append(proc)
        pipes.append(parent)
    try:
        connected, failures, connect_s = 0, Counter(), 0.0
        for pipe in pipes:
            _, ok, failed, seconds = pipe.recv()
            connected += ok
            failures.update(failed)
            connect_s = max(connect_s, seconds)
        time.sleep(2)  # every socket registered; pulse has rendered once for the org

        sent, published, stop_observing = [], [], threading.Event()
        observer = None
        if kind == "product":
            pattern = f"{server.prefix}:ws:org.*"
            observer = threading.Thread(
                target=observe, args=(redis_url, pattern, stop_observing, published)
            )
            observer.start()
            time.sleep(0.3)
        window_start = time.time()
        for pipe in pipes:
            pipe.send("start")
        cpu0 = server.cpu_seconds()
        if args.profile:
            profile(args, server.procs[0].pid, f"{kind}-{n}", int(args.seconds) - 1)
        if kind == "product":
            feeder = threading.Thread(
                target=ingest_loop, args=(server.ports, key, window_start + args.seconds, sent)
            )
            closer = None
        else:
            if kind == "channels":
                publish, closer = channels_publisher(redis_url, server.layer_prefix)
            else:
                publish, closer = (lambda data: client.publish(server.channel, data)), None
            feeder = threading.Thread(target=replay, args=(publish, frames, window_start, sent))
        feeder.start()
        time.sleep(max(0.0, window_start + args.seconds - time.time()))
        cpu = (server.cpu_seconds() - cpu0) / args.seconds
        for pipe in pipes:
            pipe.send("stop")
        window = (window_start, time.time())
        feeder.join()
        if closer:
            closer()
        stop_observing.set()
        if observer:
            observer.join()
        received, recv_sizes, client_cpu, closed = [], [], 0.0, Counter()
        for pipe in pipes:
            _, stamps, sizes, cpu_s, closed_by_server = pipe.recv()
            received += [array("d", s) for s in stamps]
            recv_sizes += [array("I", s) for s in sizes]
            client_cpu += cpu_s / args.seconds
            closed.update(closed_by_server)
        for proc in procs:
            proc.join(timeout=30)
        stale = server.stale_members(client)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        server.stop()

    got = received_sizes(received, recv_sizes, window)
    row = {
        "setup": kind,
        "clients": n,
        "connected": connected,
        "failures": dict(failures + closed),
        "connect_s": connect_s,
        "handshakes_s": connected / connect_s if connect_s else float("nan"),
        "drops": n - connected + sum(closed.values()),
        "deliveries": len(got) / args.seconds,
        "recv_bytes": statistics.mean(got) if got else float("nan"),
        "recv_p95": statistics.quantiles(got, n=100)[94] if len(got) > 1 else float("nan"),
        "viewer_bps": sum(got) / max(connected, 1) / (window[1] - window[0]),
        "server_cpu": cpu,
        "client_cpu": client_cpu,
        "stale": stale,
    }
    if kind == "product":
        lat, missing = latencies(received, sent, window)
        row["e2e"] = percentiles(lat)
        pub_times = [t for t, _ in published]
        fan, _ = latencies(received, pub_times, window)
        row["fanout"] = percentiles(fan)
        in_win = [(t - window_start, d) for t, d in published if window[0] <= t <= window[1]]
        row["frames"] = in_win
        row["missing"] = missing
    else:
        fan, missing = latencies(received, sent, window)
        row["e2e"] = (float("nan"),) * 3
        row["fanout"] = percentiles(fan)
        row["missing"] = missing
    sizes = [len(d) for _, d in frames] if kind != "product" else [len(d) for _, d in row["frames"]]
    row["frame_bytes"] = statistics.mean(sizes) if sizes else 0
    row["frames_per_s"] = len(sizes) / args.seconds
    return row


def synthetic_frames(args) -> list[tuple[float, bytes]]:
    frame = b"<div>" + b"x" * (args.frame_bytes - 11) + b"</div>"
    return [(i * TICK, frame) for i in range(int(args.seconds / TICK))]


def fmt(row: dict) -> str:
    e2e = " | ".join(f"{v:,.0f}" for v in row["e2e"]) if row["setup"] == "product" else "– | – | –"
    fan = " | ".join(f"{v:,.0f}" for v in row["fanout"])
    fails = ", ".join(f"{k} ×{v}" for k, v in row["failures"].items()) or "0"
    stale = "–" if row["stale"] is None else str(row["stale"])
    cells = (
        row["setup"],
        f"{row['clients']:,}",
        f"{row['connect_s']:.1f}",
        f"{row['handshakes_s']:,.0f}",
        e2e,
        fan,
        f"{row['deliveries']:,.0f}",
        str(row["drops"]),
        fails,
        stale,
        f"{row['frame_bytes'] / 1024:.1f} KB × {row['frames_per_s']:.1f}/s",
        f"{row['recv_bytes'] / 1024:.1f} KB",
        f"{row['recv_p95'] / 1024:.1f} KB",
        f"{row['viewer_bps'] / 1024:.1f} KB/s",
        f"{row['server_cpu']:.0%}",
        f"{row['client_cpu']:.0%}",
    )
    return "| " + " | ".join(cells) + " |"


COLUMNS = (
    "setup",
    "clients",
    "connect s",
    "handshakes/s",
    "e2e p50 ms",
    "e2e p95",
    "e2e p99",
    "fan-out p50 ms",
    "fan-out p95",
    "fan-out p99",
    "deliveries/s",
    "drops",
    "failed handshakes / closes",
    "stale",
    "frames published",
    "recv frame mean",
    "recv frame p95",
    "per viewer",
    "server CPU",
    "client CPU",
)
HEADER = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)
MEDIAN_COLUMNS = (
    "connect_s",
    "handshakes_s",
    "deliveries",
    "server_cpu",
    "client_cpu",
    "frame_bytes",
    "frames_per_s",
    "recv_bytes",
    "recv_p95",
    "viewer_bps",
)


def median_row(rows: list[dict]) -> dict:
    """Each column's median over the runs (failures and stale: the worst run)."""
    med = dict(rows[0])
    for col in ("e2e", "fanout"):
        med[col] = tuple(statistics.median(r[col][i] for r in rows) for i in range(3))
    for col in MEDIAN_COLUMNS:
        med[col] = statistics.median(r[col] for r in rows)
    med["drops"] = max(r["drops"] for r in rows)
    med["failures"] = max((r["failures"] for r in rows), key=lambda f: sum(f.values()))
    stale = [r["stale"] for r in rows if r["stale"] is not None]
    med["stale"] = max(stale) if stale else None
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000, 2000])
    parser.add_argument(
        "--setups", nargs="+", choices=SETUPS, help="default: all three (2x2: product)"
    )
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--runs", type=int, default=1, help="runs per row; the table shows medians")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument(
        "--ramp", type=int, default=0, help="open this many sockets per 100 ms (0: all at once)"
    )
    parser.add_argument("--profile", help="directory for py-spy profiles of the server (raw)")
    parser.add_argument(
        "--server-log", type=Path, help="directory for the product processes' output (<name>.log)"
    )
    parser.add_argument(
        "--topology",
        choices=sorted(TOPOLOGIES),
        default="1x1",
        help="web processes x pulses; 2x2 runs them on a private Redis Cluster (product only)",
    )
    parser.add_argument(
        "--daphne-option", action="append", help="extra daphne option for the product server"
    )
    parser.add_argument("--pulse-interval", type=float, default=TICK, help="pulse's tick, s")
    parser.add_argument("--frame-bytes", type=int, default=6000, help="baselines without product")
    args = parser.parse_args()
    webs, pulses = TOPOLOGIES[args.topology]
    args.setups = args.setups or (list(SETUPS) if args.topology == "1x1" else ["product"])
    if args.topology != "1x1":
        if set(args.setups) - {"product"}:
            parser.error("the baselines run on one Redis: give --setups product with --topology")
        if args.procs < webs:
            parser.error(f"--procs must be at least {webs}: a client process per web process")

    cluster = None
    with contextlib.ExitStack() as cleanup, scratch_database(BENCH_DB) as scratch:
        scratch.env.update(
            {
                "LIVE_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:6]}",
                "INGEST_RATE_LIMIT": "100000",
                "LOG_LEVEL": "WARNING",
                "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            }
        )
        scratch.env.setdefault("REDIS_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        if args.topology != "1x1":
            cluster = RedisClusterNodes(masters=3)
            cleanup.callback(cluster.stop)
            cluster.start(timeout=30)
            scratch.env["REDIS_URL"] = cluster.url
            # A cluster is no broker: the machine's RabbitMQ, on queues of this run's own.
            scratch.env["CELERY_BROKER_URL"] = os.environ.get("CELERY_BROKER_URL", RABBITMQ_URL)
            scratch.env["CELERY_QUEUE_PREFIX"] = f"bench-{uuid.uuid4().hex[:6]}."
        session, key = setup(scratch)
        renderers = cleanup.enter_context(Topology(scratch.env, logs=args.server_log))
        renderers.start_all(webs=0, pulses=pulses, pulse_interval=args.pulse_interval)
        results: dict[tuple[str, int], list[dict]] = {}
        try:
            time.sleep(1)
            for n in args.clients:
                for run in range(args.runs):
                    frames = synthetic_frames(args)
                    for kind in args.setups:
                        row = run_row(kind, n, args, scratch, session, key, frames)
                        if kind == "product" and row["frames"]:
                            frames = row["frames"]
                        results.setdefault((kind, n), []).append(row)
                        print(f"run {run + 1}: " + fmt(row), flush=True)
        finally:
            renderers.stop()

    redis_kind = "Redis Cluster (3 masters)" if cluster else "Redis"
    print(
        f"\nlive benchmark · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node()} · "
        f"{os.cpu_count()} cores · {webs} web process{'es' if webs > 1 else ''} + {pulses} "
        f"pulse{'s' if pulses > 1 else ''} on {redis_kind} · {args.procs} client processes · "
        f"200 events/s ingested (product) · {args.seconds:g} s per row · median of {args.runs}"
    )
    print(HEADER)
    for rows in results.values():
        print(fmt(median_row(rows)))


if __name__ == "__main__":
    main()
