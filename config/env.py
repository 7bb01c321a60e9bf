"""Strict parsing of environment variables: a bad value stops start-up with one line naming it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured


class EnvError(SystemExit, ImproperlyConfigured):
    """A bad or unsafe environment value: exits with one line naming it, no traceback, anywhere.

    Also an ImproperlyConfigured, so code that checks settings the Django way recognises it.
    """

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        super().__init__(f"configuration error: {name} {problem}")


_TRUE = {"1", "true", "on"}
_FALSE = {"0", "false", "off"}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise EnvError(name, f"must be one of true/false/1/0/on/off, got {raw!r}")


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise EnvError(name, f"must be one of {'/'.join(choices)}, got {raw!r}")
    return value


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise EnvError(name, f"must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise EnvError(name, f"must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_database_url(name: str, url: str) -> dict:
    """postgres://user:password@host:port/dbname[?sslmode=...] -> a Django DATABASES entry.

    A percent-encoded host starting with '/' (or ?host=/dir) is a unix-socket directory.
    """
    expected = "expected postgres://user:password@host:port/dbname"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EnvError(name, f"is malformed ({exc}); {expected}") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise EnvError(name, f"has scheme {parts.scheme!r}; {expected}")
    options = dict(parse_qsl(parts.query))
    host = unquote(parts.hostname or "") if parts.hostname else ""
    if "%2f" in parts.netloc.lower():
        host = unquote(parts.netloc.rsplit("@", 1)[-1])
    host = options.pop("host", host)
    name_part = unquote(parts.path.lstrip("/"))
    if not name_part:
        raise EnvError(name, f"has no database name; {expected}")
    if not host:
        raise EnvError(name, f"has no host; {expected}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name_part,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(port or ""),
        "OPTIONS": options,
    }


CLUSTER_SCHEME = "redis+cluster"  # REDIS_URL=redis+cluster://host1:port1,host2:port2/


@dataclass(frozen=True)
class RedisTarget:
    """One Redis server, in the URL shapes redis-py, channels-redis and Celery each accept, or a
    Redis Cluster (`redis+cluster://` with the nodes to start from; see `cluster_nodes`)."""

    url: str

    @property
    def is_socket(self) -> bool:
        return self.url.startswith("unix://")

    @property
    def is_cluster(self) -> bool:
        return self.url.startswith(CLUSTER_SCHEME + "://")

    @property
    def cluster_nodes(self) -> tuple[tuple[str, int], ...]:
        """The (host, port) of each node given in a cluster URL (empty for a single server)."""
        return cluster_nodes(self.url) if self.is_cluster else ()

    def node_url(self) -> str:
        """A plain redis:// URL of one server: the first node of a cluster (pub/sub is
        cluster-wide, so any node hears every PUBLISH), else the URL itself."""
        if not self.is_cluster:
            return self.url
        host, port = self.cluster_nodes[0]
        auth = urlsplit(self.url.replace(CLUSTER_SCHEME, "redis", 1)).netloc.rpartition("@")[0]
        return f"redis://{auth + '@' if auth else ''}{host}:{port}/0"

    def celery_url(self) -> str:
        if self.is_cluster:
            # Celery's Redis broker and result backend use keys of many slots in one command.
            raise EnvError(
                "REDIS_URL",
                "is a Redis Cluster, which Celery cannot use: set CELERY_BROKER_URL "
                "(e.g. amqp://guest:guest@127.0.0.1:5672//)",
            )
        if not self.is_socket:
            return self.url
        parts = urlsplit(self.url)
        db = dict(parse_qsl(parts.query)).get("db", "0")
        return f"redis+socket://{parts.path}?virtual_host={db}"


def cluster_nodes(url: str) -> tuple[tuple[str, int], ...]:
    """redis+cluster://[user:password@]host1:port1,host2:port2[/] -> ((host1, port1), ...)."""
    netloc = url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
    nodes = []
    for node in netloc.split(","):
        host, _, port = node.strip().rpartition(":")
        nodes.append((host.strip("[]"), int(port)))
    return tuple(nodes)


def parse_redis_url(name: str, url: str) -> RedisTarget:
    expected = (
        "expected redis://host:port/db, rediss://..., unix:///path/to/redis.socket "
        "or, for a Redis Cluster, redis+cluster://host1:port1,host2:port2/"
    )
    if url.startswith(CLUSTER_SCHEME + "://"):
        _check_cluster_url(name, url, expected)
        return RedisTarget(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise EnvError(name, f"is malformed ({exc}); {expected}") from None
    if parts.scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise EnvError(name, f"has no host; {expected}")
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise EnvError(name, f"has database {db!r}, which is not a number; {expected}")
    elif parts.scheme == "unix":
        if not parts.path:
            raise EnvError(name, f"has no socket path; {expected}")
    else:
        raise EnvError(name, f"has scheme {parts.scheme!r}; {expected}")
    return RedisTarget(url)


BROKER_SCHEMES = ("amqp", "amqps", "redis", "rediss", "redis+socket")


def parse_broker_url(name: str, url: str) -> str:
    """Celery's broker: RabbitMQ (amqp://user:password@host:port/vhost, amqps://...) or Redis."""
    expected = (
        "expected amqp://user:password@host:5672/vhost, amqps://..., redis://host:port/db,"
        " rediss://... or redis+socket:///path/to/redis.socket"
    )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise EnvError(name, f"is malformed ({exc}); {expected}") from None
    if "://" not in url:
        raise EnvError(name, f"is not a URL (no scheme://); {expected}")
    if parts.scheme not in BROKER_SCHEMES:
        raise EnvError(name, f"has scheme {parts.scheme!r}; {expected}")
    if parts.scheme == "redis+socket":
        if not parts.path:
            raise EnvError(name, f"has no socket path; {expected}")
        return url
    if not parts.hostname:
        raise EnvError(name, f"has no host; {expected}")
    if parts.scheme in ("redis", "rediss"):
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise EnvError(name, f"has database {db!r}, which is not a number; {expected}")
    return url


def broker_is_amqp(url: str) -> bool:
    return urlsplit(url).scheme in ("amqp", "amqps")


def parse_name_prefix(name: str, value: str) -> str:
    """A prefix for broker queue names: letters, digits and . _ - only (may be empty)."""
    if value and not all(c.isascii() and (c.isalnum() or c in "._-") for c in value):
        raise EnvError(name, f"may hold only letters, digits and . _ -, got {value!r}")
    return value


def _check_cluster_url(name: str, url: str, expected: str) -> None:
    rest = url.split("://", 1)[1]
    netloc, _, path = rest.partition("/")
    if path.split("?", 1)[0] not in ("", "0"):
        raise EnvError(name, f"names database {path!r}, but a Redis Cluster has only 0; {expected}")
    hosts = netloc.rpartition("@")[2]
    if not hosts:
        raise EnvError(name, f"has no nodes; {expected}")
    for node in hosts.split(","):
        host, _, port = node.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise EnvError(name, f"has node {node.strip()!r}, not host:port; {expected}")
