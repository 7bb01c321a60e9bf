"""Proxy headers believed only from TRUSTED_PROXIES: a forged X-Forwarded-For against a real daphne
(started as the Procfile starts it) does not open /metrics."""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.proxy import UNTRUSTED_HOP, forwarded_scope

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-token-for-tests"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def non_loopback_address() -> str | None:
    """This machine's own address on its default route (no packet is sent), if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.123", 9))
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


class Daphne:
    """daphne as the Procfile runs it, bound to `host`, with the given TRUSTED_PROXIES."""

    def __init__(self, host: str, trusted: str):
        self.host, self.port = host, free_port(host)
        env = {
            **os.environ,
            "TRUSTED_PROXIES": trusted,
            "METRICS_TOKEN": TOKEN,
            "ALLOWED_HOSTS": f"{host},127.0.0.1,localhost",
        }
        procfile = (ROOT / "Procfile").read_text().splitlines()[0].removeprefix("web:").split()
        assert procfile[0] == "daphne" and "--proxy-headers" not in procfile
        args = procfile[1:]
        args[args.index("-b") + 1] = host
        args[args.index("-p") + 1] = str(self.port)
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "daphne"), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if self.get(headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("daphne did not start")

    def get(self, path: str = "/metrics", *, source: str | None = None, headers=None):
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=10, source_address=(source or self.host, 0)
        )
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daphne():
    started = []

    def start(host: str = "127.0.0.1", trusted: str = "") -> Daphne:
        server = Daphne(host, trusted)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_it_does_not_open_metrics_to_a_forged_forwarded_for_from_a_remote_peer(daphne):
    # a peer that is not loopback (this machine's own network address when it has one)
    web = daphne(non_loopback_address() or "127.0.0.1")
    forged = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
    status, body = web.get(headers=forged)
    assert status == 403 and b"METRICS_TOKEN" in body
    status, body = web.get(headers={**forged, "Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and b"botflow_events_total" in body


def test_it_takes_the_right_most_address_a_trusted_proxy_reports(daphne):
    web = daphne("127.0.0.1", trusted="127.0.0.1/32")  # a proxy on this machine
    # the client wrote "127.0.0.1"; our proxy appended the address it really came from
    status, _ = web.get(headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.9"})
    assert status == 403
    status, _ = web.get(headers={"X-Forwarded-For": "127.0.0.1,203.0.113.9, 127.0.0.1"})
    assert status == 403  # two proxies of ours in a row: still the client's address
    assert web.get(headers={"X-Forwarded-For": "127.0.0.1"})[0] == 200  # our proxy, local client
    assert web.get()[0] == 200  # the proxy's own scrape, nothing forwarded


def test_it_needs_the_token_behind_a_proxy_it_was_not_told_about(daphne):
    """TRUSTED_PROXIES unset and a local proxy in front: every request comes from 127.0.0.1, so
    a forwarded one (from anywhere) must not pass for local."""
    web = daphne("127.0.0.1", trusted="")
    assert web.get(headers={"X-Forwarded-For": "203.0.113.9"})[0] == 403
    assert web.get(headers={"X-Forwarded-For": "127.0.0.1"})[0] == 403
    assert web.get(headers={"X-Real-IP": "127.0.0.1"})[0] == 403
    assert web.get()[0] == 200  # a scraper on this machine itself


def _scope(peer: str, *headers: tuple[bytes, bytes], kind: str = "http") -> dict:
    scheme = "ws" if kind == "websocket" else "http"
    return {
        "type": kind,
        "scheme": scheme,
        "client": (peer, 5555),
        "headers": [(b"host", b"example.com"), *headers],
    }


PROXIES = [ipaddress.ip_network("10.0.0.0/8")]


def test_it_takes_scheme_and_address_from_a_trusted_proxy_only():
    trusted = forwarded_scope(
        _scope(
            "10.0.0.2",
            (b"x-forwarded-for", b"198.51.100.1, 203.0.113.9, 10.0.0.3"),
            (b"x-forwarded-proto", b"https"),
        ),
        PROXIES,
    )
    assert trusted["client"] == ("203.0.113.9", 0) and trusted["scheme"] == "https"
    assert trusted["headers"] == [(b"host", b"example.com")]  # nothing left to misread later
    socket_scope = forwarded_scope(
        _scope("10.0.0.2", (b"x-forwarded-proto", b"https"), kind="websocket"), PROXIES
    )
    assert socket_scope["scheme"] == "wss" and socket_scope["client"] == ("10.0.0.2", 5555)
    forged = forwarded_scope(
        _scope("203.0.113.9", (b"x-forwarded-for", b"10.0.0.3"), (b"x-forwarded-proto", b"https")),
        PROXIES,
    )
    assert forged["client"] == ("203.0.113.9", 5555) and forged["scheme"] == "http"
    assert forged[UNTRUSTED_HOP] is True and forged["headers"] == [(b"host", b"example.com")]
    unreadable = forwarded_scope(_scope("10.0.0.2", (b"x-forwarded-for", b"unknown")), PROXIES)
    assert unreadable["client"] is None  # not the proxy's own address
    plain = _scope("203.0.113.9")
    assert forwarded_scope(plain, PROXIES) is plain
