"""DermAI settings: one file, every deploy-time value from the environment with a safe default."""

import sys
from pathlib import Path

import environ
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.management.utils import get_random_secret_key

from ml import SHIPPED_CHECKPOINT

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"  # local state: SQLite database and generated secret key, never committed
VAR_DIR.mkdir(exist_ok=True)  # a fresh checkout has none, and SQLite does not create folders

env = environ.Env()


def _local_secret_key(path: Path) -> str:
    """A secret key generated once and kept in var/, for a local run without DJANGO_SECRET_KEY."""
    if not path.exists():
        path.write_text(get_random_secret_key())
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env.bool("DJANGO_DEBUG", default=False)
# HTTPS hardening: on with DJANGO_SECURE=true (production), off for the plain-HTTP local run.
SECURE = env.bool("DJANGO_SECURE", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
# Production stops here with one line on stderr, not a traceback. A key generated per host would
# sign sessions and CSRF tokens that other hosts reject; a weak one fails Django's check W009.
if SECURE and not SECRET_KEY:
    sys.exit("DJANGO_SECURE=true needs DJANGO_SECRET_KEY: set one secret shared by every host")
if SECURE and (
    len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH
    or len(set(SECRET_KEY)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
    or SECRET_KEY.startswith(SECRET_KEY_INSECURE_PREFIX)
):
    sys.exit(
        f"DJANGO_SECURE=true needs a strong DJANGO_SECRET_KEY: this one has {len(SECRET_KEY)} characters, "
        f"{len(set(SECRET_KEY))} different; at least {SECRET_KEY_MIN_LENGTH} characters, "
        f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} different, not starting with {SECRET_KEY_INSECURE_PREFIX!r}"
    )
SECRET_KEY = SECRET_KEY or _local_secret_key(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=SECURE)  # false behind a TLS proxy
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000 if SECURE else 0)
# Both bind every subdomain (and, preloaded, every browser) to HTTPS for years: opt in knowingly.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = LANGUAGE_COOKIE_SECURE = SECURE
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_HTTPONLY = True
SECURE_REFERRER_POLICY = "same-origin"
# Behind a proxy that terminates TLS, e.g. DJANGO_SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https
SECURE_PROXY_SSL_HEADER = tuple(env.list("DJANGO_SECURE_PROXY_SSL_HEADER", default=[])) or None
SILENCED_SYSTEM_CHECKS = [
    *(["security.W008"] if SECURE and not SECURE_SSL_REDIRECT else []),  # the proxy redirects to HTTPS instead
    *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),  # opt-in, see above
    *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "classifier",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # After the language and CSRF cookie are known (its 413 page speaks the visitor's language and
    # its form keeps working), before anything reads the body (CSRF reads it only in process_view).
    "classifier.middleware.upload_size_limit",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "classifier.middleware.admin_login_rate_limit",  # before any password is hashed
    "axes.middleware.AxesMiddleware",  # last: it answers a locked-out admin login
]

ROOT_URLCONF = "dermai_site.urls"
WSGI_APPLICATION = "dermai_site.wsgi.application"

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
                "classifier.context_processors.site",
            ],
        },
    },
]

# SQLite under var/ by default; PostgreSQL in production, e.g. postgres://user:pass@host:5432/dermai
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# Keep each worker's connection open between requests (checked before reuse) rather than reconnecting.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The shared cache writes on every request from several workers: write-ahead logging lets
    # readers carry on, and a writer waits for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Admin logins: django-axes counts failures per user name and address, logs each one, and locks
# that pair out for an hour after five (AxesStandaloneBackend first, then the usual backend). The
# address is the throttle's (DERMAI_NUM_PROXIES): behind nginx the client's, not nginx's.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("DERMAI_ADMIN_LOGIN_ATTEMPTS", default=5)
AXES_COOLOFF_TIME = 1  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "classifier.throttles.client_address"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `collectstatic` writes and WhiteNoise serves from (the tests collect into a folder of their own).
STATIC_ROOT = Path(env.str("DERMAI_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("examples", BASE_DIR / "examples" / "images"),
    ("model-card", BASE_DIR / "docs"),  # figures of the rendered documents (classifier/documents.py)
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},  # nothing user-sent goes to disk
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Uploads stay in memory: the only handler keeps them in RAM and refuses anything over the cap,
# so Django's TemporaryFileUploadHandler never writes a photo to the temp dir.
DERMAI_MAX_UPLOAD_MB = env.float("DERMAI_MAX_UPLOAD_MB", default=12)  # one image
DERMAI_MAX_BATCH_FILES = env.int("DERMAI_MAX_BATCH_FILES", default=20)
# What a batch's files may cost to decode together, in pixel-scans (ml.preprocessing.decoding_cost):
# about a second of decoding on a 2-core server, twenty 12-megapixel photos four times over.
DERMAI_MAX_BATCH_PIXEL_SCANS = env.int("DERMAI_MAX_BATCH_PIXEL_SCANS", default=1_000_000_000)
# Past this many seconds of decoding, a batch's remaining files are not decoded (`batch_over_budget`):
# a slower machine than the budget's still answers well inside gunicorn's 30 s worker timeout.
DERMAI_BATCH_DEADLINE_SECONDS = env.float("DERMAI_BATCH_DEADLINE_SECONDS", default=8.0)
DERMAI_MAX_REQUEST_MB = env.float("DERMAI_MAX_REQUEST_MB", default=64)  # a whole request, batches included
FILE_UPLOAD_HANDLERS = ["classifier.uploads.MemoryOnlyUploadHandler"]

# The model: the shipped checkpoint unless another is named; torch threads per worker process.
DERMAI_CHECKPOINT = Path(env.str("DERMAI_CHECKPOINT", default=str(SHIPPED_CHECKPOINT)))
DERMAI_TORCH_THREADS = env.int("DERMAI_TORCH_THREADS", default=1)
# A prediction is flagged "uncertain" when its calibrated top probability is below this.
DERMAI_UNCERTAIN_BELOW = env.float("DERMAI_UNCERTAIN_BELOW", default=0.5)

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["classifier.renderers.JSONRenderer"],  # DRF's, with the disclaimer on every answer
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.MultiPartParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "classifier.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["classifier.throttles.AnonRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("DERMAI_THROTTLE_ANON", default="120/minute"),
        # Each attempt costs a password hash (~0.6 s of a worker), whatever the user name.
        "admin_login": env.str("DERMAI_ADMIN_LOGIN_RATE", default="10/minute"),
    },
    # Reverse proxies in front of gunicorn: 0 counts requests by the socket's address and ignores
    # X-Forwarded-For (which any client can write); behind one proxy (nginx) set 1. The one rule for
    # a client's address, classifier.throttles.client_address, reads it.
    "NUM_PROXIES": env.int("DERMAI_NUM_PROXIES", default=0),
}

# Content-Security-Policy on every response (django-csp): only this site's scripts and styles,
# images from here or data: URIs (the result page's previews), no frames, no plugins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# The throttles count requests in this cache (cache.add and an atomic cache.incr), and the class
# texts and example results are kept in it. It must be shared by every worker (one budget per
# client, admin edits seen at once): by default a table of the default database (created by
# `migrate`, migration 0005); for several hosts Redis, e.g. CACHE_URL=redis://127.0.0.1:6379/0.
CACHES = {"default": env.cache_url("CACHE_URL", default="dbcache://dermai_cache")}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache":
    CACHES["default"]["BACKEND"] = "dermai_site.cache.DatabaseCache"  # the same, with an atomic incr

SPECTACULAR_SETTINGS = {
    "TITLE": "DermAI API",
    "DESCRIPTION": "Classify a dermatoscopic image into the seven ISIC 2018 classes. "
    "For education and research only; not a medical device.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,  # request bodies get their own components: file fields are binary
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
}

# Example images offered on the home page (a small HAM10000 layout, see examples/README.md).
DERMAI_EXAMPLES_DIR = BASE_DIR / "examples"
