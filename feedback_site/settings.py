"""Settings, read once from the environment (12-factor) with embedded defaults.

Embedded defaults give a newcomer a working site with nothing to configure:
SQLite under ``var/``, Celery tasks executed in-process, files under
``var/storage``.  Production sets ``DATABASE_URL``, ``CELERY_BROKER_URL``,
``STORAGE_ROOT`` (a shared mount), ``SECRET_KEY`` and ``DJANGO_ENV=production``
(which refuses to start without an explicit ``SECRET_KEY``; elsewhere one is
generated once into ``var/secret_key``).
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from editing.jit_cache import use_cache_dir
from feedback_site.secret_key import stored_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
# numba's compiled kernels (librosa's beat tracker) in a folder of the project's, named before anything
# imports numba: settings load first in the site, every manage.py command and the Celery workers.
NUMBA_CACHE_DIR = use_cache_dir(VAR_DIR / "numba-cache")


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Off unless asked for: a forgotten variable must never mean tracebacks for everyone.
# scripts/run.sh (the local demo) and the test settings turn it on.
DEBUG = _env_bool("DJANGO_DEBUG", False)
# "production" makes a forgotten SECRET_KEY an error instead of a key generated on this machine.
DJANGO_ENV = os.environ.get("DJANGO_ENV", "").strip().lower()
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and DJANGO_ENV == "production":
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DJANGO_ENV=production and DJANGO_DEBUG is off: every machine "
            "and process of the site must sign sessions with the same key (python -c \"import secrets; "
            "print(secrets.token_urlsafe(48))\" makes one)"
        )
    # A first run on any machine: one key, generated into var/ and reused by every later run.
    try:
        SECRET_KEY = stored_secret_key(VAR_DIR / "secret_key")
    except (OSError, ValueError) as problem:
        raise ImproperlyConfigured(f"SECRET_KEY is not set and none could be kept under {VAR_DIR}: {problem}") from None

ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",  # login throttling (see "Login throttling" below)
    "annotations",
    "rlhf",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Crafted requests are refused before anything reads them (feedback_site.limits): 414, and 400 for text
    # holding a NUL, a lone surrogate or invalid UTF-8 (JSON bodies: feedback_site.rest's parser).
    "feedback_site.limits.UrlLengthLimitMiddleware",
    "csp.middleware.CSPMiddleware",
    "feedback_site.headers.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "feedback_site.limits.UploadSizeLimitMiddleware",
    "feedback_site.limits.CraftedTextMiddleware",  # after the size check: it reads form bodies
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "feedback_site.errors.DomainErrorMiddleware",
    # Last: turns a login that hit the failure limit into axes' lockout response (429 + Retry-After).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "feedback_site.urls"
WSGI_APPLICATION = "feedback_site.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        # A persistent connection is checked before a request reuses it, so a database restart
        # costs a reconnect, not a failed request on a stale connection.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Concurrent writers (the site and an in-process task) wait instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The default cache holds DRF's throttle counts (and axes' cool-off lookups): with several gunicorn
# workers or machines they must share one, so production names Redis (CACHE_URL, else REDIS_URL).
# Unset: each process's own memory, enough for one process.
CACHE_URL = os.environ.get("CACHE_URL", "").strip() or os.environ.get("REDIS_URL", "").strip()
if CACHE_URL:
    if not CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"CACHE_URL must be a redis://, rediss:// or unix:// URL, not {CACHE_URL!r}")
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- Login throttling (django-axes) -------------------------------------------
# A web login is refused (429 with Retry-After) once an account, or a client address, has
# LOGIN_FAILURE_LIMIT failed logins without a LOGIN_LOCKOUT_MINUTES pause; the lockout
# lasts that long after the last attempt.  Behind reverse proxies set TRUSTED_PROXY_COUNT
# to their number, so the address is the client's, not the proxy's (feedback_site.login_throttle).
AUTHENTICATION_BACKENDS = [
    "feedback_site.login_throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: per account OR per address
AXES_LOCKOUT_CALLABLE = "feedback_site.login_throttle.lockout_response"
AXES_CLIENT_IP_CALLABLE = "feedback_site.login_throttle.client_ip"
AXES_USERNAME_CALLABLE = "feedback_site.login_throttle.client_username"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))

# Audio, features and model artifacts live under one storage root.  Workers on
# other machines see the same files when STORAGE_ROOT is a shared mount, or when
# STORAGE_BACKEND names another Django storage backend.
STORAGE_ROOT = Path(os.environ.get("STORAGE_ROOT", VAR_DIR / "storage"))
MEDIA_ROOT = STORAGE_ROOT
MEDIA_URL = "/media/"  # never served directly: audio goes through permission-checked views
STORAGES = {
    "default": {
        "BACKEND": os.environ.get("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": {"location": str(STORAGE_ROOT)} if "STORAGE_BACKEND" not in os.environ else {},
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}

# --- Celery -----------------------------------------------------------------
# Unset broker: tasks run in-process (eager), so a first run needs no services.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
# Without a broker, tasks started from a web page run in a thread of the site (feedback_site.background).
TASKS_IN_THREAD = _env_bool("TASKS_IN_THREAD", True)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_DEFAULT_QUEUE = "default"
TRAINING_QUEUE = "training"
# Retargeting only samples the policy (seconds): it stays on the default queue rather than wait
# behind a training step; everything else of rlhf trains, on its own queue (GPU workers take it).
CELERY_TASK_ROUTES = {
    "rlhf.tasks.retarget_job_task": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "rlhf.tasks.*": {"queue": TRAINING_QUEUE},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Long jobs (uploads, exports, retarget jobs, cycle steps) beat ``heartbeat_at`` every
# JOB_HEARTBEAT_SECONDS while they run; one silent for JOB_STALE_AFTER_SECONDS lost its worker and is
# ended by annotations.jobs.jobs_recover (failed with the reason, or a cycle's step re-dispatched).
# Recovery runs when a worker starts, every JOB_RECOVER_EVERY_SECONDS in every worker and from the beat
# schedule, and when a job is looked at.
JOB_HEARTBEAT_SECONDS = float(os.environ.get("JOB_HEARTBEAT_SECONDS", "20"))
JOB_STALE_AFTER_SECONDS = float(os.environ.get("JOB_STALE_AFTER_SECONDS", "300"))
JOB_RECOVER_EVERY_SECONDS = float(os.environ.get("JOB_RECOVER_EVERY_SECONDS", "60"))
if JOB_STALE_AFTER_SECONDS < 3 * JOB_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        f"JOB_STALE_AFTER_SECONDS ({JOB_STALE_AFTER_SECONDS:g}) must be at least three heartbeats "
        f"(JOB_HEARTBEAT_SECONDS={JOB_HEARTBEAT_SECONDS:g}), or a live job could be taken for a dead one")
# Redis hands an unacknowledged task (its worker died) to another worker after this many seconds.
# Every long task is safe to deliver twice (a job no longer queued, a cycle step another worker holds
# with a fresh heartbeat: the second delivery does nothing), and a dead worker's job is ended by the
# heartbeat recovery within minutes, so this only has to outlast the longest job that is not a cycle
# step (the analysis of a MAX_TRACK_SECONDS upload, a large export, best-of-64): one hour.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 3600))}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# django-celery-beat's scheduler copies this into its table at start (editable in the admin afterwards).
CELERY_BEAT_SCHEDULE = {
    "recover stale jobs": {"task": "annotations.jobs_recover", "schedule": JOB_RECOVER_EVERY_SECONDS},
}
CELERY_TIMEZONE = TIME_ZONE

# --- Domain settings ----------------------------------------------------------
# 20 minutes: a live set or DJ mix (editing.audio.MAX_TRACK_SECONDS, the analysis default; the planner's
# tables for such a track at 2x take about 0.25 GB at 137 BPM, 0.5 GB at 200 BPM: bench/bench_long_retarget.py).
MAX_TRACK_SECONDS = float(os.environ.get("MAX_TRACK_SECONDS", 20 * 60))
# The longest URL (path and query string) the site answers; longer ones are refused with 414.  gunicorn
# refuses request lines over its limit_request_line (gunicorn.conf.py: 8190 bytes) before the site sees them.
MAX_URL_CHARS = int(os.environ.get("MAX_URL_CHARS", "4096"))
# The largest upload (one request, all its files), refused from its Content-Length before it is read.
MAX_UPLOAD_BYTES = int(float(os.environ.get("MAX_UPLOAD_MB", "200")) * 1_000_000)
# Annotation: share of assignments drawn from gold, from sides-swapped repeats and from hidden references,
# how long an assignment holds its slot, and how long each side must be heard.
ANNOTATION_GOLD_RATE = float(os.environ.get("ANNOTATION_GOLD_RATE", "0.1"))
ANNOTATION_REPEAT_RATE = float(os.environ.get("ANNOTATION_REPEAT_RATE", "0.05"))
# Hidden references (MUSHRA's): both sides play the same edit, so a tie or a low confidence is the right
# answer; they measure each annotator's reliability on the quality page and never train.
ANNOTATION_HIDDEN_REFERENCE_RATE = float(os.environ.get("ANNOTATION_HIDDEN_REFERENCE_RATE", "0"))
ANNOTATION_ASSIGNMENT_MINUTES = float(os.environ.get("ANNOTATION_ASSIGNMENT_MINUTES", "30"))
ANNOTATION_MIN_LISTEN_SECONDS = float(os.environ.get("ANNOTATION_MIN_LISTEN_SECONDS", "5"))
# What annotators hear: "opus" (default: the native render resampled to 48 kHz, the source's channels,
# about 80 kbit/s per channel), "flac" (lossless at the source's own rate and channels, for critical
# listening) or "mp3" (legacy: the analysis-rate mono rendering at about 60 kbit/s, which hides the
# seam artefacts annotators are asked to hear).  See annotations.services.LISTENING_FORMATS.
ANNOTATION_AUDIO_FORMAT = os.environ.get("ANNOTATION_AUDIO_FORMAT", "opus").strip().lower()
if ANNOTATION_AUDIO_FORMAT not in ("opus", "flac", "mp3"):
    raise ImproperlyConfigured(f"ANNOTATION_AUDIO_FORMAT must be 'opus', 'flac' or 'mp3', not {ANNOTATION_AUDIO_FORMAT!r}")

# Where training workers run torch: "" = CUDA when the worker's machine has a GPU, else CPU;
# "cpu" or "cuda" forces one ("cuda" on a machine without a GPU fails the cycle step with that reason).
TRAINING_DEVICE = os.environ.get("TRAINING_DEVICE", "").strip().lower() or None
if TRAINING_DEVICE not in (None, "cpu", "cuda"):
    raise ImproperlyConfigured(f"TRAINING_DEVICE must be empty, 'cpu' or 'cuda', not {TRAINING_DEVICE!r}")

# Retrain cycle parameters: their defaults live in rlhf.cycle.parameters.CycleParameters (one home); the
# environment only overrides them (CYCLE_PPO_TIMESTEPS=4096 ...), checked and bounded there, and the
# researcher page and `run_cycle` override them per cycle.
CYCLE_PARAMETER_OVERRIDES = {
    name: os.environ[variable]
    for name, variable in (
        ("ppo_timesteps", "CYCLE_PPO_TIMESTEPS"),
        ("learned_weight", "CYCLE_LEARNED_WEIGHT"),
        ("n_excerpts", "CYCLE_N_EXCERPTS"),
        ("n_pairs", "CYCLE_N_PAIRS"),
        ("random_share", "CYCLE_RANDOM_SHARE"),
        ("pair_selection", "CYCLE_PAIR_SELECTION"),
    )
    if os.environ.get(variable, "").strip()
}
# The periodic trigger: every CYCLE_EVERY_HOURS, start a cycle when this many judgements are new.
CYCLE_EVERY_HOURS = float(os.environ.get("CYCLE_EVERY_HOURS", "6"))
CYCLE_MIN_NEW_JUDGEMENTS = int(os.environ.get("CYCLE_MIN_NEW_JUDGEMENTS", "200"))
# A cycle is refused before it is queued unless the reward model would train on at least
# REWARD_MIN_PAIRS compared pairs of edits and CYCLE_START_MIN_NEW_JUDGEMENTS judgements arrived
# since the last finished cycle (``rlhf.selectors.cycle_preflight``).
CYCLE_START_MIN_NEW_JUDGEMENTS = int(os.environ.get("CYCLE_START_MIN_NEW_JUDGEMENTS", "20"))
REWARD_MIN_PAIRS = int(os.environ.get("REWARD_MIN_PAIRS", "20"))
# Annotators whose gold accuracy is below this are left out of training and flagged on the quality page.
REWARD_MIN_GOLD_ACCURACY = float(os.environ.get("REWARD_MIN_GOLD_ACCURACY", "0.7"))
# A queued cycle that no worker took within this long (its message was lost) is dispatched again; a
# step a worker took and went silent is recovered after JOB_STALE_AFTER_SECONDS (see above), at most
# CYCLE_MAX_REDISPATCHES times (a step that kills its worker every time fails the cycle instead).
CYCLE_STALE_MINUTES = float(os.environ.get("CYCLE_STALE_MINUTES", "30"))
CYCLE_MAX_REDISPATCHES = int(os.environ.get("CYCLE_MAX_REDISPATCHES", "2"))

# --- REST framework -----------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Bounds on what one request may ask for (feedback_site.rest): ?limit= capped at
    # API_MAX_PAGE_SIZE, JSON bodies nested deeper than feedback_site.rest.MAX_JSON_DEPTH refused (400).
    "DEFAULT_PAGINATION_CLASS": "feedback_site.rest.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_PARSER_CLASSES": [
        "feedback_site.rest.DepthLimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # Scoped throttles (429 with Retry-After), per user, on the views that set `throttle_scope`:
    # judgement submits and lists, export-job creation, cycle starts (the page's form too).
    # Counts live in the default cache: shared by every process when CACHE_URL (or REDIS_URL) names Redis.
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "judgements": os.environ.get("THROTTLE_JUDGEMENTS", "240/min"),
        "export_create": os.environ.get("THROTTLE_EXPORT_CREATE", "30/hour"),
        "cycle_start": os.environ.get("THROTTLE_CYCLE_START", "20/hour"),
    },
    "EXCEPTION_HANDLER": "feedback_site.errors.api_exception_handler",
}
API_MAX_PAGE_SIZE = 1000

SPECTACULAR_SETTINGS = {
    "TITLE": "Music-edit feedback studio API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs are for the studio's own users.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # swagger-ui from our static files, at the version pinned by drf-spectacular-sidecar: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Security (production hardening switches on with DEBUG off) ---------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the annotation page reads it to call the API
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Scripts, styles and everything else from this origin only: no inline script or style, no CDN.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],  # swagger-ui's stylesheet draws its icons from data: URIs
        "media-src": [SELF],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
# Browser features no page of the studio uses are switched off (feedback_site.headers).
PERMISSIONS_POLICY = ("accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
                      "microphone=(), payment=(), usb=(), autoplay=(self), fullscreen=(self)")
if not DEBUG:
    SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # One year, no preload: preloading is a commitment of the whole domain (and its subdomains)
    # to HTTPS, hard to undo, and the operator's decision, not this project's default.
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = False
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# check --deploy recommends preload (W021); leaving it off is deliberate (see above).
SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
