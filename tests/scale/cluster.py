"""A real Redis Cluster of the test's own: 3 masters (and optionally one replica each) on free
ports in a temporary directory, no persistence, torn down by stop(). Bounded in time: start()
gives up after `timeout` seconds with the nodes' last log lines."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def _free_ports(n: int) -> list[int]:
    """n free ports whose cluster-bus ports (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


class RedisClusterNodes:
    """`masters` masters and `replicas` replicas per master; url is a REDIS_URL for them all."""

    def __init__(self, *, masters: int = 3, replicas: int = 0) -> None:
        self.replicas = replicas
        self.ports = _free_ports(masters * (1 + replicas))
        self.root = Path(tempfile.mkdtemp(prefix="bf-cluster-"))
        self.procs: dict[int, subprocess.Popen] = {}
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/"

    def start_node(self, port: int) -> None:
        log = (self.root / f"redis-{port}.log").open("ab")
        self.procs[port] = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "2000",
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",
                "0",
                "--daemonize",
                "no",
            ],
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for port in self.ports:
            self.start_node(port)
        for port in self.ports:
            self._wait(lambda port=port: self.node(port).ping(), deadline, f"node {port} up")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=max(1.0, deadline - time.monotonic()),
        )
        self.wait_ok(deadline)
        if self.replicas:
            self._wait(self._replicas_in_sync, deadline, "replica in sync with its master")

    def _replicas_in_sync(self) -> bool:
        """Every replica has finished its first sync (before that it cannot take over)."""
        replicas = [self.node(p).info("replication") for p in self.procs]
        replicas = [r for r in replicas if r["role"] == "slave"]
        return len(replicas) == len(self.ports) - len(self.ports) // (1 + self.replicas) and all(
            r["master_link_status"] == "up" for r in replicas
        )

    def wait_ok(self, deadline: float) -> None:
        """Every running node says cluster_state:ok and knows every slot's master."""

        def ok() -> bool:
            for port, proc in self.procs.items():
                if proc.poll() is not None:
                    continue
                info = self.node(port).cluster("info")
                if info.get("cluster_state") != "ok" or int(info["cluster_slots_ok"]) != 16384:
                    return False
            return True

        self._wait(ok, deadline, "cluster_state:ok")

    def _wait(self, check, deadline: float, what: str) -> None:
        while True:
            try:
                if check():
                    return
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-800:] for p in self.root.glob("*.log"))
                raise TimeoutError(f"Redis Cluster: no {what} in time\n{logs}")
            time.sleep(0.1)

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)

    def live(self) -> list[int]:
        return [port for port, proc in self.procs.items() if proc.poll() is None]

    def masters(self) -> list[int]:
        """Ports of the running nodes that are masters now (each node's own word for it)."""
        return sorted(
            p for p in self.live() if self.node(p).info("replication")["role"] == "master"
        )

    def master_of(self, key: str) -> int:
        """The port of the master serving `key`'s slot now."""
        for port, proc in self.procs.items():
            if proc.poll() is None:
                slot = self.node(port).cluster("keyslot", key)
                for start, end, master, *_ in self.node(port).execute_command("CLUSTER SLOTS"):
                    if start <= slot <= end:
                        return int(master[1])
        raise LookupError(key)

    def wait_failover(self, dead: int, timeout: float = 30.0) -> float:
        """Wait until a replica has replaced the killed master `dead` and the cluster is ok
        again; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout

        def replaced() -> bool:
            for port in self.live():
                for _start, _end, master, *_ in self.node(port).execute_command("CLUSTER SLOTS"):
                    if int(master[1]) == dead:
                        return False
            return True

        self._wait(replaced, deadline, f"replica in place of {dead} in every node's map")
        self.wait_ok(deadline)
        return time.monotonic() - started

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.kill()
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RedisClusterNodes:
        """`with RedisClusterNodes(...) as nodes:` a cluster started, and stopped whatever happens."""
        try:
            self.start(timeout=30.0 if self.replicas == 0 else 40.0)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
