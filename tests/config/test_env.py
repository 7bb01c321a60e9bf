"""Strict settings: a bad environment value stops start-up with one clear line naming it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.env import (
    EnvError,
    env_bool,
    parse_broker_url,
    parse_database_url,
    parse_name_prefix,
    parse_redis_url,
)

ROOT = Path(__file__).resolve().parents[2]


def run_manage(env_overrides: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_overrides}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_refuses_debug_yes_with_one_line_naming_the_variable():
    result = run_manage({"DEBUG": "yes"}, "check")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "configuration error: DEBUG must be one of true/false/1/0/on/off, got 'yes'"
    ]


def test_it_refuses_a_malformed_database_url_with_one_line():
    result = run_manage({"DATABASE_URL": "mysql://localhost/db"}, "check")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("configuration error: DATABASE_URL has scheme 'mysql'")


def test_it_starts_with_good_values():
    production = {
        "BOTFLOW_ENV": "production",
        "DEBUG": "false",
        "SECRET_KEY": "k3y-" + "0123456789abcdef" * 4,
        "ALLOWED_HOSTS": "botflow.example.com",
    }
    result = run_manage(production, "check")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("0", False), ("OFF", False), ("", True)]
)
def test_it_parses_booleans_strictly(monkeypatch, raw, expected):
    monkeypatch.setenv("FLAG", raw)
    assert env_bool("FLAG", default=True) is expected


@pytest.mark.parametrize("raw", ["yes", "no", "2", "enabled"])
def test_it_rejects_ambiguous_booleans(monkeypatch, raw):
    monkeypatch.setenv("FLAG", raw)
    with pytest.raises(EnvError, match="FLAG must be one of"):
        env_bool("FLAG", default=False)


def test_it_parses_tcp_and_socket_database_urls():
    tcp = parse_database_url(
        "DATABASE_URL", "postgres://bf:s%40cret@db.internal:6432/botflow?sslmode=require"
    )
    assert (tcp["HOST"], tcp["PORT"], tcp["USER"], tcp["PASSWORD"], tcp["NAME"]) == (
        "db.internal",
        "6432",
        "bf",
        "s@cret",
        "botflow",
    )
    assert tcp["OPTIONS"] == {"sslmode": "require"}
    socket = parse_database_url("DATABASE_URL", "postgresql://postgres:@/postgres?host=/tmp/pg")
    assert (socket["HOST"], socket["NAME"], socket["OPTIONS"]) == ("/tmp/pg", "postgres", {})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgres://localhost", "has no database name"),
        ("postgres://host:notaport/db", "is malformed"),
        ("http://host/db", "has scheme 'http'"),
    ],
)
def test_it_names_what_is_wrong_with_a_database_url(url, problem):
    with pytest.raises(EnvError) as excinfo:
        parse_database_url("DATABASE_URL", url)
    assert str(excinfo.value.code).startswith(f"configuration error: DATABASE_URL {problem}")


def test_it_turns_a_redis_socket_url_into_celerys_form():
    target = parse_redis_url("REDIS_URL", "unix:///tmp/r/redis.socket?db=2")
    assert target.celery_url() == "redis+socket:///tmp/r/redis.socket?virtual_host=2"
    assert (
        parse_redis_url("REDIS_URL", "redis://127.0.0.1:6379/0").celery_url()
        == "redis://127.0.0.1:6379/0"
    )
    with pytest.raises(EnvError, match="REDIS_URL has database 'x'"):
        parse_redis_url("REDIS_URL", "redis://127.0.0.1:6379/x")


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@127.0.0.1:5672//",
        "amqps://bf:s3cret@mq.internal:5671/botflow",
        "redis://127.0.0.1:6379/3",
        "rediss://:pw@redis.internal:6380/0",
        "redis+socket:///tmp/r/redis.socket?virtual_host=2",
    ],
)
def test_it_accepts_rabbitmq_and_redis_brokers(url):
    assert parse_broker_url("CELERY_BROKER_URL", url) == url


def test_it_takes_a_redis_cluster_by_its_nodes():
    target = parse_redis_url("REDIS_URL", "redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001/")
    assert target.is_cluster and not parse_redis_url("REDIS_URL", "redis://h:1/0").is_cluster
    assert target.cluster_nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    # channels-redis' pub/sub layer gets one node: a cluster hears every PUBLISH on any node
    assert target.node_url() == "redis://:s3cret@10.0.0.1:7000/0"
    with pytest.raises(EnvError, match="REDIS_URL is a Redis Cluster.*set CELERY_BROKER_URL"):
        target.celery_url()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("sqs://key:secret@", "has scheme 'sqs'"),
        ("127.0.0.1:5672", "is not a URL (no scheme://)"),
        ("amqp:///botflow", "has no host"),
        ("amqp://host:notaport//", "is malformed"),
        ("redis://127.0.0.1:6379/x", "has database 'x', which is not a number"),
        ("redis+socket://", "has no socket path"),
    ],
)
def test_it_names_what_is_wrong_with_a_broker_url(url, problem):
    with pytest.raises(EnvError) as excinfo:
        parse_broker_url("CELERY_BROKER_URL", url)
    assert str(excinfo.value.code).startswith(f"configuration error: CELERY_BROKER_URL {problem}")


def test_it_refuses_a_bad_broker_url_or_queue_prefix_with_one_line_naming_it():
    result = run_manage({"CELERY_BROKER_URL": "kafka://127.0.0.1:9092"}, "check")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("configuration error: CELERY_BROKER_URL has scheme 'kafka'")
    assert "amqp://user:password@host:5672/vhost" in lines[0]
    result = run_manage({"CELERY_QUEUE_PREFIX": "ci run/1"}, "check")
    expected = "configuration error: CELERY_QUEUE_PREFIX may hold only letters, digits and . _ -,"
    assert result.stderr.strip().splitlines() == [f"{expected} got 'ci run/1'"]
    assert parse_name_prefix("CELERY_QUEUE_PREFIX", "ci-42.") == "ci-42."


def test_the_broker_defaults_to_redis_and_rabbitmq_gets_durable_queues_by_environment():
    shown = (
        "from django.conf import settings as s; "
        "q = {x.name: (x.durable, x.exchange.type, x.exchange.durable) for x in s.CELERY_TASK_QUEUES}; "
        "print(s.CELERY_BROKER_URL, s.CELERY_RESULT_BACKEND, s.CELERY_TASK_DEFAULT_QUEUE, "
        "s.CELERY_BROKER_CONNECTION_MAX_RETRIES, sorted(s.CELERY_BROKER_TRANSPORT_OPTIONS)); "
        "print(q); print(s.CELERY_TASK_ROUTES['analytics.tasks.rollup_*'])"
    )
    redis_url = os.environ.get("REDIS_URL", "")
    default = run_manage({"CELERY_BROKER_URL": ""}, "shell", "-v", "0", "-c", shown)
    assert default.returncode == 0, default.stderr
    first = default.stdout.splitlines()[0].split(" ", 4)
    if redis_url.startswith("redis://"):
        assert first[:2] == [redis_url, redis_url]  # broker and results on REDIS_URL
    assert first[2:4] == ["default", "None"]  # and the worker retries a lost broker forever
    assert "visibility_timeout" in first[4]
    rabbit = run_manage(
        {
            "CELERY_BROKER_URL": "amqp://bf:pw@mq.internal:5672/botflow",
            "CELERY_QUEUE_PREFIX": "ci-7.",
        },
        "shell",
        "-v",
        "0",
        "-c",
        shown,
    )
    assert rabbit.returncode == 0, rabbit.stderr
    first, queues, route = rabbit.stdout.splitlines()
    broker, backend, default_queue, retries, options = first.split(" ", 4)
    assert broker == "amqp://bf:pw@mq.internal:5672/botflow"
    assert backend.startswith(("redis://", "redis+socket://"))  # results stay on Redis
    assert (default_queue, retries, options) == ("ci-7.default", "None", "['confirm_publish']")
    assert queues == str(
        {
            f"ci-7.{name}": (True, "direct", True)
            for name in ("default", "followups", "rollups", "insights", "alerts")
        }
    )
    assert route == "{'queue': 'ci-7.rollups'}"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster:///", "has no nodes"),
        ("redis+cluster://10.0.0.1:7000,10.0.0.2/", "has node '10.0.0.2', not host:port"),
        ("redis+cluster://10.0.0.1:70000/", "has node '10.0.0.1:70000', not host:port"),
        ("redis+cluster://10.0.0.1:7000/3", "names database '3', but a Redis Cluster has only 0"),
        ("rediscluster://h:1/", "has scheme 'rediscluster'"),
    ],
)
def test_it_names_what_is_wrong_with_a_redis_cluster_url(url, problem):
    with pytest.raises(EnvError) as excinfo:
        parse_redis_url("REDIS_URL", url)
    message = str(excinfo.value.code)
    assert message.startswith(f"configuration error: REDIS_URL {problem}")
    assert "redis+cluster://host1:port1,host2:port2/" in message  # the shape it expects


def test_on_a_cluster_the_settings_pick_what_works_there():
    cluster = {"REDIS_URL": "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/"}
    result = run_manage(cluster, "check")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        (
            "configuration error: REDIS_URL is a Redis Cluster, which Celery cannot use: set "
            "CELERY_BROKER_URL (e.g. amqp://guest:guest@127.0.0.1:5672//)"
        )
    ]
    shown = run_manage(
        {**cluster, "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"},
        "shell",
        "-c",
        "from django.conf import settings as s; layer = s.CHANNEL_LAYERS['default'];"
        "host = layer['CONFIG']['hosts'][0];"
        "print(layer['BACKEND'], host['address'], host['connection_class'].__name__);"
        "print(s.CACHES['default']['BACKEND'], s.CELERY_BROKER_URL, s.CELERY_RESULT_BACKEND)",
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split()[-6:] == [  # after the shell's note on its imports
        "channels_redis.pubsub.RedisPubSubChannelLayer",
        "redis://127.0.0.1:7000/0",
        "AnyNodeConnection",
        "django.core.cache.backends.locmem.LocMemCache",
        "amqp://guest:guest@127.0.0.1:5672//",
        "None",
    ]
