"""Monoenv settings: one file, driven by environment variables.

Defaults run locally on the embedded PostgreSQL and Redis. Production sets
DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY and ALLOWED_HOSTS (see
docs/operations.md). Importing this file starts nothing and creates nothing.
"""

import re
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from monoenv_site import embedded
from monoenv_site.env import envbool, envint, envlist, envsecret, envstr

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = envbool("DEBUG", False)
MONOENV_PRODUCTION = envbool("MONOENV_PRODUCTION", False)
SECRET_KEY = envsecret("SECRET_KEY") or ("" if MONOENV_PRODUCTION else "insecure-local-only-key")
if not SECRET_KEY:
    # Django would only notice at the first request; stop before serving anything.
    raise ImproperlyConfigured("MONOENV_PRODUCTION is set: set SECRET_KEY or SECRET_KEY_FILE")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

# Nothing here creates it, nor starts a server: the entry points do (embedded.prepare).
MONOENV_DATA_DIR = embedded.data_dir(envstr("MONOENV_DATA_DIR", str(BASE_DIR / ".monoenv")))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Monoenv's own apps, in layers: each imports only those listed before it.
    "notifications",
    "telemetry",
    "slo",
    "deployments",
    "flags",
    "incidents",
    "dashboard",
    "demo",
    # The project itself: `manage.py evaluate` runs every app's periodic job once.
    "monoenv_site",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "monoenv_site.nul.refuse_nul_in_urls",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "monoenv_site.urls"

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

WSGI_APPLICATION = "monoenv_site.wsgi.application"

DATABASE_URL = envsecret("DATABASE_URL") or embedded.expected_postgres_url(MONOENV_DATA_DIR)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600)}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# Made by the entry points (embedded.prepare_data_dir), or by collectstatic.
STATIC_ROOT = MONOENV_DATA_DIR / "static"
# With finders on, a STATIC_ROOT not made yet (a gunicorn started by hand before
# collectstatic) serves all the same; WhiteNoise would warn in every worker.
warnings.filterwarnings("ignore", message=f"No directory at: {re.escape(str(STATIC_ROOT))}")
# WhiteNoise serves the admin's and the dashboard's assets without a separate
# web server; finders spare the local stack a collectstatic step.
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    # pgserver reports every process that attaches to the embedded server.
    "loggers": {"pgserver": {"level": "WARNING"}},
}

# Celery: the broker is the embedded Redis unless CELERY_BROKER_URL is set.
CELERY_BROKER_URL = envsecret("CELERY_BROKER_URL") or embedded.redis_url(MONOENV_DATA_DIR)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    # Every 15 s, so a deploy's minute look comes at most 15 s after it is due:
    # a first fail within 2 minutes of the deploy. Claims make extra runs harmless.
    "deployments-periodic": {
        "task": "deployments.tasks.run_periodic",
        "schedule": timedelta(seconds=15),
        "options": {"expires": 14},
    },
    "telemetry-retention": {
        "task": "telemetry.tasks.enforce_retention",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3600},
    },
    "telemetry-rollup": {
        "task": "telemetry.tasks.rollup_pending",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 55},
    },
    "telemetry-flag-attribution": {
        "task": "telemetry.tasks.attribute_flag_evaluations",
        "schedule": timedelta(seconds=30),
        "options": {"expires": 25},
    },
    "flags-periodic": {
        "task": "flags.tasks.run_periodic",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 55},
    },
    "slo-evaluation": {
        "task": "slo.tasks.dispatch_evaluations",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 55},
    },
    "notifications-send": {
        "task": "notifications.tasks.send_due",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 55},
    },
    "incidents-poll": {
        "task": "incidents.tasks.poll",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 55},
    },
}

# Ingest.
MONOENV_HTTP_PORT = envint("MONOENV_HTTP_PORT", 8000)
MONOENV_OTLP_HTTP_PORT = envint("MONOENV_OTLP_HTTP_PORT", 4318)
MONOENV_OTLP_GRPC_PORT = envint("MONOENV_OTLP_GRPC_PORT", 4317)
MONOENV_PUBLIC_URL = envstr("MONOENV_PUBLIC_URL", f"http://localhost:{MONOENV_HTTP_PORT}")
# The OTLP spec recommends capping the decompressed body; 64 MiB is its default.
MONOENV_MAX_REQUEST_BYTES = envint("MONOENV_MAX_REQUEST_BYTES", 64 * 1024 * 1024)
MONOENV_MAX_ATTRIBUTE_VALUE_BYTES = envint("MONOENV_MAX_ATTRIBUTE_VALUE_BYTES", 64 * 1024)
MONOENV_MAX_ATTRIBUTES_PER_SPAN = envint("MONOENV_MAX_ATTRIBUTES_PER_SPAN", 256)
MONOENV_MAX_SPANS_PER_REQUEST = envint("MONOENV_MAX_SPANS_PER_REQUEST", 100_000)
MONOENV_RETENTION_DAYS = envint("MONOENV_RETENTION_DAYS", 14)
MONOENV_MAX_FUTURE_SECONDS = envint("MONOENV_MAX_FUTURE_SECONDS", 3600)
# Batches one process decodes and writes at once; up to QUEUE_LENGTH more wait
# QUEUE_SECONDS for a turn, and the rest get 503 at once. Keep the server's
# threads (gunicorn --threads, otlp_grpc --threads) above the sum of the two.
MONOENV_INGEST_CONCURRENCY = envint("MONOENV_INGEST_CONCURRENCY", 2)
MONOENV_INGEST_QUEUE_LENGTH = envint("MONOENV_INGEST_QUEUE_LENGTH", 1)
MONOENV_INGEST_QUEUE_SECONDS = envint("MONOENV_INGEST_QUEUE_SECONDS", 1)
# A batch the database has not taken within this many seconds (per statement,
# lock waits included) is spooled, well inside the exporters' 10 s timeout.
MONOENV_INGEST_DB_TIMEOUT_SECONDS = envint("MONOENV_INGEST_DB_TIMEOUT_SECONDS", 5)
# A database host that does not answer at all (a failover, a partition) must
# not hold ingest threads for the TCP timeout: past this, the batch is spooled.
MONOENV_DB_CONNECT_TIMEOUT_SECONDS = envint("MONOENV_DB_CONNECT_TIMEOUT_SECONDS", 5)
DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
    "connect_timeout", MONOENV_DB_CONNECT_TIMEOUT_SECONDS
)
# Short enough that an exporter with its default 10 s timeout retries ~4 times.
MONOENV_RETRY_AFTER_SECONDS = envint("MONOENV_RETRY_AFTER_SECONDS", 2)
# The durable spool for batches PostgreSQL cannot take now (docs/reliability.md).
# Only when it holds MAX_BYTES does ingest answer 503; 0 turns it off.
MONOENV_SPOOL_DIR = Path(envstr("MONOENV_SPOOL_DIR", str(MONOENV_DATA_DIR / "spool")))
MONOENV_SPOOL_MAX_BYTES = envint("MONOENV_SPOOL_MAX_BYTES", 1024 * 1024 * 1024)
# After a failed store, batches go straight to the spool for this long before
# the database is tried again.
MONOENV_SPOOL_PROBE_SECONDS = envint("MONOENV_SPOOL_PROBE_SECONDS", 1)
# Each serving process replays the spool in a background thread; with this
# off, `manage.py otlp_spool --replay` does it instead (cron, or tests).
MONOENV_SPOOL_BACKGROUND_REPLAY = envbool("MONOENV_SPOOL_BACKGROUND_REPLAY", True)
# A token check is trusted this long without asking the database again; a
# revoked token is refused within this many seconds. While the database is
# down, tokens it confirmed before are still accepted.
MONOENV_TOKEN_CACHE_SECONDS = envint("MONOENV_TOKEN_CACHE_SECONDS", 5)
# The OTLP/HTTP server closes a connection whose request headers take longer
# than this, and answers 408 to a body that takes longer than BODY_TIMEOUT.
MONOENV_OTLP_HEADER_TIMEOUT_SECONDS = envint("MONOENV_OTLP_HEADER_TIMEOUT_SECONDS", 10)
MONOENV_OTLP_BODY_TIMEOUT_SECONDS = envint("MONOENV_OTLP_BODY_TIMEOUT_SECONDS", 30)
# Threads per OTLP/HTTP worker process that check tokens and decode and store
# complete requests; keep it above MONOENV_INGEST_CONCURRENCY + QUEUE_LENGTH.
MONOENV_OTLP_HTTP_THREADS = envint("MONOENV_OTLP_HTTP_THREADS", 8)
# Seconds between two writes of a token's last use.
MONOENV_TOKEN_TOUCH_SECONDS = envint("MONOENV_TOKEN_TOUCH_SECONDS", 60)
# Requests per second per token, across all processes, after a burst; 0 turns it off.
# An SDK exporter sends a batch every few seconds, so this only stops a runaway client.
MONOENV_TOKEN_RATE_LIMIT = envint("MONOENV_TOKEN_RATE_LIMIT", 200)
MONOENV_TOKEN_RATE_BURST = envint("MONOENV_TOKEN_RATE_BURST", 400)
# Failed logins allowed per username and per client address within the window;
# past them, one more attempt is allowed each window/failures seconds.
MONOENV_LOGIN_FAILURES_PER_USER = envint("MONOENV_LOGIN_FAILURES_PER_USER", 10)
MONOENV_LOGIN_FAILURES_PER_ADDRESS = envint("MONOENV_LOGIN_FAILURES_PER_ADDRESS", 50)
MONOENV_LOGIN_WINDOW_SECONDS = envint("MONOENV_LOGIN_WINDOW_SECONDS", 900)
# Reverse proxies in front of Monoenv that append to X-Forwarded-For; 0 trusts none.
MONOENV_TRUSTED_PROXIES = envint("MONOENV_TRUSTED_PROXIES", 0)

# Rollups and SLOs.
# Minutes younger than this (after they end) are shown as provisional; late
# spans are still counted in their own minute whenever they arrive.
MONOENV_ROLLUP_LATENESS_MINUTES = envint("MONOENV_ROLLUP_LATENESS_MINUTES", 15)
MONOENV_ROLLUP_RETENTION_DAYS = envint("MONOENV_ROLLUP_RETENTION_DAYS", 35)
# A burn-rate alert needs at least this many events in each of its windows,
# so a low-traffic service does not page on a single error.
MONOENV_SLO_MIN_EVENTS = envint("MONOENV_SLO_MIN_EVENTS", 20)
# An SLO whose counts are younger than this, or hold fewer events in its
# window, is still learning: its budget is shown but never blocks the gate.
MONOENV_SLO_LEARNING_HOURS = envint("MONOENV_SLO_LEARNING_HOURS", 24)
MONOENV_SLO_LEARNING_MIN_EVENTS = envint("MONOENV_SLO_LEARNING_MIN_EVENTS", 500)
MONOENV_WEBHOOK_TIMEOUT_SECONDS = envint("MONOENV_WEBHOOK_TIMEOUT_SECONDS", 10)
MONOENV_WEBHOOK_MAX_ATTEMPTS = envint("MONOENV_WEBHOOK_MAX_ATTEMPTS", 5)

# Deploy verdicts (deployments/). Checkpoints are minutes after each deploy.
MONOENV_GITHUB_WEBHOOK_SECRET = envsecret("MONOENV_GITHUB_WEBHOOK_SECRET")
MONOENV_DEPLOY_CHECKPOINTS = [int(m) for m in envlist("MONOENV_DEPLOY_CHECKPOINTS", "5,15,30,60")]
MONOENV_DEPLOY_BASELINE_MINUTES = envint("MONOENV_DEPLOY_BASELINE_MINUTES", 60)
MONOENV_DEPLOY_CONFIDENCE = float(envstr("MONOENV_DEPLOY_CONFIDENCE", "0.99"))
# A regression must be this large to fail a deploy, however significant.
MONOENV_DEPLOY_ERROR_RATE_MIN_PP = float(envstr("MONOENV_DEPLOY_ERROR_RATE_MIN_PP", "0.5"))
MONOENV_DEPLOY_ERROR_RATE_MIN_RATIO = float(envstr("MONOENV_DEPLOY_ERROR_RATE_MIN_RATIO", "1.5"))
MONOENV_DEPLOY_LATENCY_MIN_RATIO = float(envstr("MONOENV_DEPLOY_LATENCY_MIN_RATIO", "1.2"))
MONOENV_DEPLOY_LATENCY_MIN_MS = float(envstr("MONOENV_DEPLOY_LATENCY_MIN_MS", "10"))
# A significant regression fails once its estimate reaches this share of the
# threshold (docs/deployments.md, "What fail means"); pass still needs the whole.
MONOENV_DEPLOY_FAIL_FLOOR = float(envstr("MONOENV_DEPLOY_FAIL_FLOOR", "0.5"))
# Alpha spending over the looks: (1 - final share)·alpha·t^rho, and the final
# share at the last look (deployments/stats.py, spent_alpha).
MONOENV_DEPLOY_SPENDING_RHO = float(envstr("MONOENV_DEPLOY_SPENDING_RHO", "0.5"))
MONOENV_DEPLOY_FINAL_ALPHA_SHARE = float(envstr("MONOENV_DEPLOY_FINAL_ALPHA_SHARE", "0.25"))
MONOENV_DEPLOY_MIN_ROUTE_REQUESTS = envint("MONOENV_DEPLOY_MIN_ROUTE_REQUESTS", 50)
MONOENV_DEPLOY_MAX_SAMPLES = envint("MONOENV_DEPLOY_MAX_SAMPLES", 200_000)
MONOENV_DEPLOY_UPSERT_MINUTES = envint("MONOENV_DEPLOY_UPSERT_MINUTES", 60)
MONOENV_DEPLOY_SUSPECT_LOOKBACK_MINUTES = envint("MONOENV_DEPLOY_SUSPECT_LOOKBACK_MINUTES", 120)
MONOENV_DEPLOY_EVALUATION_LAG_SECONDS = envint("MONOENV_DEPLOY_EVALUATION_LAG_SECONDS", 30)
# A deploy is looked at every minute of its first hour, besides the checkpoints.
MONOENV_DEPLOY_WATCH_MINUTES = envint("MONOENV_DEPLOY_WATCH_MINUTES", 60)
# A failing deploy this long back within every threshold has "recovered".
MONOENV_DEPLOY_RECOVERY_MINUTES = envint("MONOENV_DEPLOY_RECOVERY_MINUTES", 10)
# The per-look state of deploy verdicts (deployments/analysis.py, derived and
# rebuilt when missing): each worker's memory by default, so a look taken by
# another worker reads its spans again; a Redis URL (the broker's will do, e.g.
# redis://127.0.0.1:6379/1) shares it between workers.
MONOENV_DEPLOY_STATE_CACHE_URL = envstr("MONOENV_DEPLOY_STATE_CACHE_URL", "")
if MONOENV_DEPLOY_STATE_CACHE_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "verdicts": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": MONOENV_DEPLOY_STATE_CACHE_URL,
            "KEY_PREFIX": "monoenv",
        },
    }
# A look whose worker died is claimed again after this long.
MONOENV_DEPLOY_CLAIM_SECONDS = envint("MONOENV_DEPLOY_CLAIM_SECONDS", 120)
# The route watch: between deploys, each route's last minutes against the hour before.
MONOENV_ROUTE_WATCH_MINUTES = envint("MONOENV_ROUTE_WATCH_MINUTES", 10)
MONOENV_ROUTE_WATCH_BASELINE_MINUTES = envint("MONOENV_ROUTE_WATCH_BASELINE_MINUTES", 60)
MONOENV_ROUTE_WATCH_EVERY_MINUTES = envint("MONOENV_ROUTE_WATCH_EVERY_MINUTES", 5)
# Feature flags (flags/): merging, detection of share shifts, webhook secrets.
MONOENV_FLAG_MERGE_MINUTES = envint("MONOENV_FLAG_MERGE_MINUTES", 10)
MONOENV_FLAG_DETECT_MINUTES = envint("MONOENV_FLAG_DETECT_MINUTES", 5)
MONOENV_FLAG_BASELINE_MINUTES = envint("MONOENV_FLAG_BASELINE_MINUTES", 15)
MONOENV_FLAG_DETECT_ALPHA = float(envstr("MONOENV_FLAG_DETECT_ALPHA", "0.001"))
MONOENV_FLAG_MIN_SHARE_SHIFT = float(envstr("MONOENV_FLAG_MIN_SHARE_SHIFT", "0.05"))
MONOENV_FLAG_MIN_EVALUATIONS = envint("MONOENV_FLAG_MIN_EVALUATIONS", 30)
# Flag verdicts look on after the deploy looks while a rollout stays partial:
# every few minutes up to the horizon, with this share of 1 - confidence.
MONOENV_FLAG_CONTINUE_EVERY_MINUTES = envint("MONOENV_FLAG_CONTINUE_EVERY_MINUTES", 5)
MONOENV_FLAG_WATCH_HOURS = envint("MONOENV_FLAG_WATCH_HOURS", 24)
MONOENV_FLAG_CONTINUED_ALPHA_SHARE = float(envstr("MONOENV_FLAG_CONTINUED_ALPHA_SHARE", "0.2"))
MONOENV_UNLEASH_WEBHOOK_SECRET = envsecret("MONOENV_UNLEASH_WEBHOOK_SECRET")
MONOENV_FLAGSMITH_WEBHOOK_SECRET = envsecret("MONOENV_FLAGSMITH_WEBHOOK_SECRET")
MONOENV_LAUNCHDARKLY_WEBHOOK_SECRET = envsecret("MONOENV_LAUNCHDARKLY_WEBHOOK_SECRET")

# Incidents (docs/incidents.md): signals within the group window on the same or a
# connected service join one incident; proposals wait for a sustained calm.
MONOENV_INCIDENT_GROUP_MINUTES = envint("MONOENV_INCIDENT_GROUP_MINUTES", 30)
MONOENV_INCIDENT_LOOKBACK_MINUTES = envint("MONOENV_INCIDENT_LOOKBACK_MINUTES", 360)
MONOENV_INCIDENT_SUSTAIN_MINUTES = envint("MONOENV_INCIDENT_SUSTAIN_MINUTES", 15)
MONOENV_INCIDENT_SLOW_MS = envint("MONOENV_INCIDENT_SLOW_MS", 1000)

if MONOENV_PRODUCTION:
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
