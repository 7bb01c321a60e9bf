"""One Redis client per process for live state (rebuildable; PostgreSQL is the source of truth).

REDIS_URL names one server (redis://, rediss://, unix://: a redis.Redis) or a Redis Cluster
(`redis+cluster://host1:port1,host2:port2/`: a redis.cluster.RedisCluster that finds the other
nodes itself). Every key of an org carries the hash tag `{o:<org id>}` (analytics/live_keys.py),
so an org's multi-key pipelines, transactions and Lua scripts stay in one slot of the cluster.
Two things the cluster client does differently, which callers here take care of: a pipeline
cannot hold a PUBLISH (`publish_after`), and a script in a pipeline is sent whole (EVAL, see
`pipeline_eval`), as the cluster pipeline cannot load it first.
"""

from __future__ import annotations

import functools

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
from django.conf import settings
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterUnreachableError, SlotNotCoveredError

CLUSTER_PREFIX = "redis+cluster://"
# What a cluster that cannot serve raises besides RedisErrors (no node answers, a slot has no
# master yet mid-failover): callers that ride out an outage catch these too.
REDIS_FAILURES = (redis.RedisError, RedisClusterUnreachableError, SlotNotCoveredError)


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_PREFIX)


def _cluster_parts(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """redis+cluster://[user:password@]host1:port1,host2:port2[/] -> nodes, username, password
    (config/env.py has checked the shape at start-up)."""
    netloc = url[len(CLUSTER_PREFIX) :].split("/", 1)[0]
    auth, _, hosts = netloc.rpartition("@")
    username, _, password = auth.partition(":") if auth else ("", "", "")
    nodes = []
    for node in hosts.split(","):
        host, _, port = node.strip().rpartition(":")
        nodes.append((host.strip("[]"), int(port)))
    return nodes, username or None, password or None


def redis_client(url: str, **options) -> redis.Redis | RedisCluster:
    """A client for `url` with `options` (timeouts): a RedisCluster for a cluster URL."""
    if not is_cluster(url):
        return redis.Redis.from_url(url, **options)
    nodes, username, password = _cluster_parts(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        username=username,
        password=password,
        **options,
    )


def async_redis_client(url: str, **options) -> aioredis.Redis | aiocluster.RedisCluster:
    """The asyncio counterpart of redis_client (the hub's pub/sub and presence reports)."""
    if not is_cluster(url):
        return aioredis.Redis.from_url(url, **options)
    nodes, username, password = _cluster_parts(url)
    return aiocluster.RedisCluster(
        startup_nodes=[aiocluster.ClusterNode(host, port) for host, port in nodes],
        username=username,
        password=password,
        **options,
    )


@functools.cache
def any_node_connection(url: str) -> type[aioredis.Connection]:
    """An asyncio connection class for plain pub/sub on the Redis Cluster of `url` (channels-redis'
    pub/sub layer): it connects to the node it used last, else to the next node that accepts.
    Any node serves pub/sub for the whole cluster, so a node that fails is left for another
    and redis-py's PubSub subscribes again there on its reconnect."""
    nodes = _cluster_parts(url)[0]

    class AnyNodeConnection(aioredis.Connection):
        async def _connect(self) -> None:
            here = (self.host, self.port)
            start = nodes.index(here) if here in nodes else 0
            error: BaseException | None = None
            for host, port in nodes[start:] + nodes[:start]:
                self.host, self.port = host, port
                try:
                    await super()._connect()
                except (OSError, TimeoutError) as exc:  # refused, unreachable, timed out
                    error = exc
                else:
                    return
            raise error

    return AnyNodeConnection


def cluster_channel_layer(url: str, node_url: str) -> dict:
    """The CHANNEL_LAYERS entry for a Redis Cluster: channels-redis' pub/sub layer, through the
    node of `node_url` while it answers, else another node of the cluster."""
    host = {
        "address": node_url,
        "socket_connect_timeout": 3,
        "connection_class": any_node_connection(url),
    }
    return {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": [host]}}


def get_redis() -> redis.Redis:
    return _client(settings.REDIS_URL)


@functools.cache
def _client(url: str) -> redis.Redis:
    return redis_client(url, socket_timeout=5, socket_connect_timeout=3)


def get_redis_probe() -> redis.Redis:
    """A client for health checks: a Redis that does not answer within a second counts as down
    (the usual client waits up to 3 s to connect and 5 s to read)."""
    return _probe(settings.REDIS_URL)


@functools.cache
def _probe(url: str) -> redis.Redis:
    return redis_client(url, socket_timeout=1, socket_connect_timeout=1)


def reset_clients() -> None:
    """Forget the cached clients (after REDIS_URL changed, e.g. in a test)."""
    _client.cache_clear()
    _probe.cache_clear()


def clustered(client) -> bool:
    """Whether `client` (or a pipeline of it) talks to a Redis Cluster."""
    return isinstance(client, RedisCluster | aiocluster.RedisCluster | aiocluster.ClusterPipeline)


def pipeline_eval(pipe, script, keys: list[str], args: list) -> None:
    """Queue a registered script (client.register_script) on `pipe`: by its SHA on a single
    server (the pipeline loads it when missing), the whole script on a cluster (its pipelines
    cannot load scripts, and a replica promoted by a failover may not hold it)."""
    if isinstance(pipe, redis.client.Pipeline):
        script(keys=keys, args=args, client=pipe)
    else:
        pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)


def publish_after(pipe, channel: str, message) -> list:
    """Queue a PUBLISH on a single server's pipeline; returns the publishes to make after the
    pipeline ran when `pipe` is a cluster pipeline (which refuses PUBLISH). Pass that list to
    `publish_now`."""
    if isinstance(pipe, redis.client.Pipeline):
        pipe.publish(channel, message)
        return []
    return [(channel, message)]


def publish_now(client, publishes: list) -> None:
    for channel, message in publishes:
        client.publish(channel, message)


def redis_ping() -> str:
    try:
        get_redis().ping()
    except redis.RedisError as exc:
        return f"error: {exc.__class__.__name__}"
    return "ok"
