"""Django settings for channels-stack.

Everything that differs between machines comes from the environment (see README "Configuration").
Production refuses to start without a secret key and never allows every host.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from board.limits import PostRate
from config.redis_hosts import parse_sentinels, redis_hosts

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: expected 1/0, true/false, yes/no or on/off")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a number") from None


DEBUG = env_bool("DJANGO_DEBUG", False)

# --- Deploy mode (issue 14; deploy/defaults.yml deploy_mode, README "Deploy modes") --------------
# Which servers run this app: "split" (Gunicorn for HTTP, Daphne for /ws/ and long polling), "asgi"
# (Daphne for everything) or "wsgi" (Gunicorn alone). In wsgi there is no channel layer at all
# (CHANNEL_LAYERS below is empty): a posted message is stored and not broadcast (browsers poll
# GET /api/messages?after=), a job is stored and not sent to a channel (`manage.py pollworker`
# finds it in the database), and the health probes do not ask Redis. Every program gets DEPLOY_MODE
# from supervisor's environment (deploy/supervisor/programs.conf.j2).
DEPLOY_MODES = ("split", "asgi", "wsgi")
DEPLOY_MODE = os.environ.get("DEPLOY_MODE") or "split"
if DEPLOY_MODE not in DEPLOY_MODES:
    raise ImproperlyConfigured(f"DEPLOY_MODE={DEPLOY_MODE!r}: expected one of {', '.join(DEPLOY_MODES)}")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set (only DJANGO_DEBUG=1 runs without one)")
    SECRET_KEY = "insecure-development-key-never-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
if "*" in ALLOWED_HOSTS and not DEBUG:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must list the site's host names; '*' is refused")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    # Before "channels", so board's runworker (with the job lease sweeper) is the one Django runs.
    "board",
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "channels",
]

MIDDLEWARE = [
    "board.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATA_DIR = Path(os.environ.get("APP_DATA_DIR", BASE_DIR.parent / "data"))
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Gunicorn, Daphne and the workers share one file: WAL lets readers run beside the writer,
    # IMMEDIATE takes the write lock up front (no deadlock on upgrade), and the busy timeout makes
    # a writer wait for the lock instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # One connection per Gunicorn worker, per worker process and per Daphne process (its database
    # calls run on one thread, database_sync_to_async), kept open for DATABASE_CONN_MAX_AGE seconds
    # instead of a new TCP + SCRAM handshake per request or socket event (~5 ms), and checked
    # before reuse (CONN_HEALTH_CHECKS), so a database restart costs one reconnect, not one error.
    # (Under ASGI only the consumers' one thread keeps its connection; board.views.healthz closes
    # the one its per-request thread opened: README "PostgreSQL".)
    # ATOMIC_REQUESTS stays off: writes are short explicit transactions (board.services), and a
    # transaction around every request would hold the message-order lock (board.ordering) for the
    # whole request instead of one insert.
    DATABASES["default"]["CONN_MAX_AGE"] = env_number("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # An unreachable database fails a request or /healthz in seconds instead of hanging a worker
    # for the kernel's TCP timeout; a value in DATABASE_URL (?connect_timeout=) wins.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
else:
    # board.ordering relies on how these two order concurrent writers; no other engine is tested.
    raise ImproperlyConfigured(
        f"DATABASE_URL: {DATABASES['default']['ENGINE']} is not supported; use sqlite:///PATH or postgres://..."
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels ---------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Fail fast when Redis is unreachable rather than hang a request or a consumer. The read timeout
# must stay well above channels-redis' 5 s blocking receive (BZPOPMIN) of the job queue, or an idle
# worker would see a timeout on every receive.
# With REDIS_SENTINELS ("host:port,..."), the primary is whichever REDIS_SENTINEL_MASTER is now
# (config/redis_hosts.py); REDIS_URL then gives the user, password and database only.
REDIS_HOSTS = redis_hosts(
    REDIS_URL,
    parse_sentinels(os.environ.get("REDIS_SENTINELS", "")),
    os.environ.get("REDIS_SENTINEL_MASTER", ""),
    os.environ.get("REDIS_SENTINEL_PASSWORD", ""),
    connect_timeout=2,
    timeout=15,
)
CHANNEL_LAYERS = (
    {}
    if DEPLOY_MODE == "wsgi"
    else {
        # Groups (the board, each job's progress): Redis pub/sub, one message per group per Daphne
        # process instead of one per socket (issue 9). A lost Redis connection sends every consumer
        # "channel_layer.disconnect", and the sockets are closed with 4503 (config/channel_layer.py).
        "default": {
            "BACKEND": "config.channel_layer.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": REDIS_HOSTS, "prefix": "channels-stack", "on_disconnect": "channel_layer.disconnect"},
        },
        # The job queue (`runworker jobs`): a message waits in Redis until one worker takes it, which
        # pub/sub cannot do (a message published while no worker listens is gone; two workers would
        # both get it).
        "jobs": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": REDIS_HOSTS, "prefix": "channels-stack"},
        },
    }
)
# Seconds a job's worker may go silent before another worker takes the job over.
JOB_LEASE_SECONDS = env_number("JOB_LEASE_SECONDS", 10)
# Seconds between one job step and the next.
JOB_STEP_SECONDS = env_number("JOB_STEP_SECONDS", 0.2)
# How often each worker looks for jobs whose lease ran out.
JOB_SWEEP_SECONDS = env_number("JOB_SWEEP_SECONDS", 2)
# deploy_mode wsgi: how often an idle `manage.py pollworker` asks the database for a queued job (a
# job waits at most this long before a free worker starts it).
JOB_POLL_SECONDS = env_number("JOB_POLL_SECONDS", 1)

# --- Abuse limits on sockets (board/limits.py) --------------------------------------------------
# Posts over one board socket: WS_POST_BURST at once, WS_POST_RATE per second sustained; more get an
# error frame and are not stored. Deployed: deploy/defaults.yml's daphne_ws_post_rate and
# daphne_ws_post_burst, passed by supervisor to Daphne (deploy/supervisor/programs.conf.j2); these
# defaults are the same (tests/unit/test_socket_limits.py checks).
WS_POST_RATE = env_number("WS_POST_RATE", 1)
WS_POST_BURST = env_number("WS_POST_BURST", 10)
# Bad values stop every program at start with ImproperlyConfigured naming them, not the first post.
PostRate(WS_POST_RATE, WS_POST_BURST)

# --- HTTPS and proxy --------------------------------------------------------------------------
# Nginx sets X-Forwarded-Proto; trust it only because Gunicorn and Daphne listen behind Nginx.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# DJANGO_HTTPS=1 where TLS terminates in front of the app (production); 0 for plain-HTTP staging.
HTTPS = env_bool("DJANGO_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
# Health probes come over plain HTTP from inside the host or the container network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^ws/healthz$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = int(env_number("DJANGO_HSTS_SECONDS", 3600)) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
# Preloading is an opt-in the domain's owner makes once, with a submission to browsers; it is not a
# default a template can make for them, so its deploy-check warning is silenced.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
CSRF_FAILURE_VIEW = "board.views.csrf_failure"

# Bodies are small JSON; Nginx already refuses anything over its client_max_body_size.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

# --- Static files (collected, then served by Nginx) --------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", BASE_DIR.parent / "build" / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names, so Nginx may let browsers cache them.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- Logging: one line per event on stderr, with the request id Nginx passes in ---------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "board.middleware.RequestIdFilter"},
        "client_errors": {"()": "board.middleware.ClientErrorFilter"},
    },
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "line",
            "filters": ["request_id", "client_errors"],
        },
    },
    "root": {"handlers": ["stderr"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # Gunicorn and Daphne log each request already; Django adds only 4xx/5xx details.
        "django.request": {"level": "WARNING"},
    },
}
