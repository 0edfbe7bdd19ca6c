"""All settings come from environment variables; docs/settings.md has a table of every one
(tests/ops/test_settings_documented.py keeps the two in step).

The defaults are the embedded setup: SQLite, the in-process reply stream, the local-memory
cache and the offline `demo` model, so `make run` needs no account anywhere.
"""

from __future__ import annotations

import secrets
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from chatsite.serving.middleware_list import MiddlewareList

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():  # optional; real environment variables win
    environ.Env.read_env(BASE_DIR / ".env")

DATA_DIR = Path(env.str("CHATSITE_DATA_DIR", default=str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DJANGO_DEBUG", default=False)


def _secret_key() -> str:
    # Never ship a key in the repo: take it from the environment, or make one per installation
    # and keep it in the (git-ignored) data directory so sessions survive restarts.
    if key := env.str("DJANGO_SECRET_KEY", default=""):
        return key
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# Behind a proxy that terminates TLS: believe its X-Forwarded-Proto. Only set this when the proxy
# always sets (or strips) that header, or any client could claim to be on https.
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HTTPS in production (docs/deploy.md, "HTTPS: what to set in production"): redirect plain HTTP, and
# tell browsers to use HTTPS only. The probes stay reachable over plain HTTP for a load balancer's
# health checks.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
# Django's defaults, stated: no MIME sniffing, no full URL in the Referer sent elsewhere, no
# framing (the CSP's frame-ancestors says it too), a window of our own.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = env.str("DJANGO_REFERRER_POLICY", default="same-origin")
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "csp",
    "django_htmx",
    "chat",
    # Single sign-on through OpenID Connect (only when CHAT_OIDC_* is set; chat/web/accounts.py).
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
]

# Django's and django-csp's middleware, their hooks run on the event loop rather than in a
# thread per hook (chatsite/serving/inline_middleware.py): ~10 fewer thread hops per request.
# A MiddlewareList counts each adapted class as the Django middleware it extends, so
# `check --deploy` sees it (chatsite/serving/middleware_list.py).
MIDDLEWARE = MiddlewareList(
    [
        "chatsite.serving.inline_middleware.InlineSecurityMiddleware",
        # Right after SecurityMiddleware, so static files get its headers (nosniff) and nothing else
        # runs for them. An async-capable subclass of WhiteNoise's middleware
        # (chatsite/serving/static.py).
        "chatsite.serving.static.AsyncWhiteNoiseMiddleware",
        "chatsite.ops.logs.RequestIdMiddleware",
        # Permissions-Policy everywhere; Cache-Control: private, no-store on all but static files.
        "chat.web.middleware.PrivacyHeadersMiddleware",
        "chatsite.serving.inline_middleware.InlineCSPMiddleware",
        "chat.web.middleware.FormCharsetMiddleware",
        "chatsite.serving.inline_middleware.InlineSessionMiddleware",
        "chatsite.serving.inline_middleware.InlineCommonMiddleware",
        "chatsite.serving.inline_middleware.InlineCsrfViewMiddleware",
        "chatsite.serving.inline_middleware.InlineAuthenticationMiddleware",
        "chat.web.middleware.VisitorCookieMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "chatsite.serving.inline_middleware.InlineXFrameOptionsMiddleware",
        "django_htmx.middleware.HtmxMiddleware",
        "allauth.account.middleware.AccountMiddleware",
    ]
)

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

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
                "chat.web.accounts.account_options",
            ],
        },
    },
]

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE makes concurrent writers wait for the lock instead of failing with
    # "database is locked"; WAL (set on connect, see chat/apps.py) lets readers run beside them.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20}
    )
    # Tests use a file too: Django's default in-memory test database runs in shared-cache mode,
    # whose table locks ignore the busy timeout, unlike the WAL file the app really uses.
    DATABASES["default"].setdefault("TEST", {}).setdefault(
        "NAME", str(DATA_DIR / "test_db.sqlite3")
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")

# The channel layer carries room events (chat/rooms/: presence, typing, a member's send,
# removals), never tokens: replies travel through the reply stream (chat/replies/stream/).
# With Redis, every worker shares it; its connections get a socket timeout longer than the
# layer's blocking pop (BZPOPMIN, 5 s): redis-py 8's default of 5 s made every idle consumer
# die with 1011 about every 5 s (django/channels_redis#422).
CHANNEL_LAYERS: dict[str, dict[str, object]]
if REDIS_URL:
    from chat.rooms.layer import redis_layer_hosts

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.rooms.redis_layer.ResilientRedisChannelLayer",
            "CONFIG": {"hosts": redis_layer_hosts(REDIS_URL), "capacity": 200, "expiry": 30},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Who is here and who is typing, in shared conversations. Off: no presence or typing event is
# sent or stored (the owner can also turn it off per conversation).
CHAT_PRESENCE = env.bool("CHAT_PRESENCE", default=True)

if REDIS_URL:
    from chat.replies.redis_options import cache_options

    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Explicit timeouts: a Redis outage makes a send fail fast (503), never hang.
            "OPTIONS": cache_options(),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # LocMem is per process: correct for the single-process default, which is the only
    # setup without REDIS_URL. With several workers, set REDIS_URL and these checks apply.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = 60 * 60 * 24 * 365
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# Content-Security-Policy (django-csp) on every response Django makes, error pages included. The
# pages have no inline script, no inline style and no event-handler attribute, and nothing the
# app uses needs eval, so the policy allows only the site's own files. 'self' in connect-src
# covers the site's own ws:/wss: URL too (CSP Level 3), which is all the chat connects to.
csp_directives = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:", "blob:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}
if csp_report_uri := env.str("CHAT_CSP_REPORT_URI", default=""):
    csp_directives["report-uri"] = [csp_report_uri]
# Report-only sends the same policy as Content-Security-Policy-Report-Only: the browser reports
# what it would block and blocks nothing (for trying out changes to the pages).
if env.bool("CHAT_CSP_REPORT_ONLY", default=False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": csp_directives}
else:
    CONTENT_SECURITY_POLICY = {"DIRECTIVES": csp_directives}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "chat:home"

# --- Accounts (chat/web/accounts.py; docs/security.md, "Accounts") --------------------------------
# Self sign-up at /accounts/signup/: anyone may create a normal account (off: the page is a 404).
CHAT_SIGNUP = env.bool("CHAT_SIGNUP", default=False)
# Snapshot links (/s/<token>) open without an account; false: viewers must sign in.
CHAT_PUBLIC_SHARES = env.bool("CHAT_PUBLIC_SHARES", default=True)
CHAT_SIGNUP_RATE_LIMIT = env.str("CHAT_SIGNUP_RATE_LIMIT", default="5/h")  # per client IP
# Outgoing email, e.g. smtp+tls://user:password@smtp.example.com:587 (django-environ's email_url).
# Without it nothing is ever mailed: "Forgot password?" is hidden and the reset pages are a 404.
EMAIL_URL = env.str("EMAIL_URL", default="")
CHAT_EMAIL_ENABLED = bool(EMAIL_URL)
if CHAT_EMAIL_ENABLED:
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="chatsite <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Single sign-on through an OpenID Connect provider (Keycloak, Authentik, Google, Entra ID, …):
# on when a client id and the issuer URL are set. Its callback URL is
# <site>/accounts/sso/oidc/sso/login/callback/.
CHAT_OIDC_PROVIDER_NAME = env.str("CHAT_OIDC_PROVIDER_NAME", default="Single sign-on")
CHAT_OIDC_CLIENT_ID = env.str("CHAT_OIDC_CLIENT_ID", default="")
CHAT_OIDC_CLIENT_SECRET = env.str("CHAT_OIDC_CLIENT_SECRET", default="")
CHAT_OIDC_SERVER_URL = env.str("CHAT_OIDC_SERVER_URL", default="")  # the issuer
CHAT_OIDC_ENABLED = bool(CHAT_OIDC_CLIENT_ID and CHAT_OIDC_SERVER_URL)
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ACCOUNT_ADAPTER = "chat.web.accounts.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "chat.web.accounts.SocialAccountAdapter"
ACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_PROVIDERS: dict[str, Any] = {"openid_connect": {"APPS": []}}
if CHAT_OIDC_ENABLED:
    SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"].append(
        {
            "provider_id": "sso",
            "name": CHAT_OIDC_PROVIDER_NAME,
            "client_id": CHAT_OIDC_CLIENT_ID,
            "secret": CHAT_OIDC_CLIENT_SECRET,
            "settings": {"server_url": CHAT_OIDC_SERVER_URL},
        }
    )
    # The sign-in form posts to the site, which redirects to the provider: CSP's form-action
    # governs that redirect too.
    csp_directives["form-action"].append(
        "{0.scheme}://{0.netloc}".format(urlsplit(CHAT_OIDC_SERVER_URL))
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(DATA_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing one
# WhiteNoise serves /static/ from the app (behind the proxy too). Hashed, compressed names need a
# manifest, which only `collectstatic` writes: `make run-prod` collects and sets this. Without it
# (`make run`, the tests) files are served from their sources under their own names.
STATIC_MANIFEST = env.bool("DJANGO_STATIC_MANIFEST", default=False)
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "chatsite.serving.static.ManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
# Attachments (docs/attachments.md) are stored through STORAGES["default"]: by default files in
# the data directory's media/, named by their content hash. They are only ever served by
# chatsite's own views (owner checked), never from MEDIA_URL.
MEDIA_ROOT = Path(env.str("DJANGO_MEDIA_ROOT", default=str(DATA_DIR / "media")))
# Or an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, …) through django-storages, when
# CHAT_S3_BUCKET is set. Credentials come from boto3's usual places (AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY in the environment, a profile, an instance role). Objects are private:
# chatsite reads them and serves them itself, never by a signed URL.
CHAT_S3_BUCKET = env.str("CHAT_S3_BUCKET", default="")
CHAT_S3_ENDPOINT_URL = env.str("CHAT_S3_ENDPOINT_URL", default="")
CHAT_S3_REGION = env.str("CHAT_S3_REGION", default="")
CHAT_S3_PREFIX = env.str("CHAT_S3_PREFIX", default="")


def s3_storage(
    bucket: str, *, endpoint_url: str = "", region: str = "", prefix: str = ""
) -> dict[str, Any]:
    """django-storages' S3Storage for attachments in `bucket` (tests/attachments/test_s3.py)."""
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url or None,
            "region_name": region or None,
            "location": prefix.strip("/"),
            "default_acl": None,  # the bucket's own: private
            "file_overwrite": True,  # names are content hashes: the same name, the same bytes
        },
    }


if CHAT_S3_BUCKET:
    STORAGES["default"] = s3_storage(
        CHAT_S3_BUCKET,
        endpoint_url=CHAT_S3_ENDPOINT_URL,
        region=CHAT_S3_REGION,
        prefix=CHAT_S3_PREFIX,
    )
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
WHITENOISE_AUTOREFRESH = DEBUG

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# `json`: one JSON object per line (time, level, logger, message, request_id / reply_id where
# known) for log collectors; anything else: plain text.
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "chatsite.ops.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
        }
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"chat": {"level": LOG_LEVEL}},
}

# --- Chat -----------------------------------------------------------------------------------------
CHAT_DEMO_TOKENS_PER_SECOND = env.float("CHAT_DEMO_TOKENS_PER_SECOND", default=30.0)

OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
OPENAI_MODELS = env.list("OPENAI_MODELS", default=["gpt-4.1-mini", "gpt-4.1"])
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
ANTHROPIC_MODELS = env.list("ANTHROPIC_MODELS", default=["claude-sonnet-4-5", "claude-haiku-4-5"])
# What the model picker calls each provider, e.g. OPENAI_PROVIDER_NAME=Ollama for a local server.
OPENAI_PROVIDER_NAME = env.str("OPENAI_PROVIDER_NAME", default="OpenAI")
ANTHROPIC_PROVIDER_NAME = env.str("ANTHROPIC_PROVIDER_NAME", default="Anthropic")

CHAT_DEFAULT_MODEL = env.str("CHAT_DEFAULT_MODEL", default="")
# The offline demo model. Unset (None): offered only while no real provider is configured
# (chat.providers.demo_enabled), so a site with a key set shows its real models alone.
CHAT_DEMO_ENABLED: bool | None = (
    env.bool("CHAT_DEMO_ENABLED") if env.str("CHAT_DEMO_ENABLED", default="") else None
)


def _usd_cap(name: str, value: str) -> Decimal | None:
    """A dollar amount from the environment; `none` (or `off`) turns the cap off."""
    value = value.strip()
    if value.lower() in {"none", "off", ""}:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ImproperlyConfigured(
            f"{name} must be an amount in dollars (e.g. 0.25) or `none`, not {value!r}."
        ) from None
    if amount < 0:
        raise ImproperlyConfigured(f"{name} must not be negative, not {value!r}.")
    return amount


# Default spending caps for anonymous visitors on priced models (chat.costs.budgets): each
# visitor's per day, and all anonymous visitors' together per day. A cap staff set in the admin
# for anonymous visitors (or for everyone) replaces the per-visitor one.
CHAT_ANONYMOUS_DAILY_CAP_USD = _usd_cap(
    "CHAT_ANONYMOUS_DAILY_CAP_USD", env.str("CHAT_ANONYMOUS_DAILY_CAP_USD", default="0.25")
)
CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD = _usd_cap(
    "CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD",
    env.str("CHAT_ANONYMOUS_TOTAL_DAILY_CAP_USD", default="5"),
)
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=8000)
CHAT_MAX_SYSTEM_PROMPT_CHARS = env.int("CHAT_MAX_SYSTEM_PROMPT_CHARS", default=4000)
CHAT_MAX_OUTPUT_TOKENS = env.int("CHAT_MAX_OUTPUT_TOKENS", default=4096)
CHAT_HISTORY_MAX_MESSAGES = env.int("CHAT_HISTORY_MAX_MESSAGES", default=50)
CHAT_PROVIDER_MAX_RETRIES = env.int("CHAT_PROVIDER_MAX_RETRIES", default=2)
CHAT_REPLY_TIMEOUT = env.float("CHAT_REPLY_TIMEOUT", default=300.0)
CHAT_IDLE_TIMEOUT = env.float("CHAT_IDLE_TIMEOUT", default=60.0)
CHAT_COALESCE_MS = env.int("CHAT_COALESCE_MS", default=40)
# How often a live reply's text is saved. Without Redis the database is its only record if the
# process dies, so a crash loses at most this much of what readers saw; with Redis the shared log
# keeps every delta for the reaper, and the database is written less often
# (benchmarks/progress_save.py, docs/performance.md).
CHAT_FLUSH_SECONDS = env.float("CHAT_FLUSH_SECONDS", default=1.0 if REDIS_URL else 0.25)
# Each worker marks its live replies alive (in Redis and the database) every quarter of this;
# another worker ends the replies of a worker silent this long as `interrupted`.
CHAT_WORKER_DEAD_AFTER_SECONDS = env.float("CHAT_WORKER_DEAD_AFTER_SECONDS", default=10.0)
# On SIGTERM a worker takes no new replies and lets live ones finish for this long.
CHAT_SHUTDOWN_GRACE_SECONDS = env.float("CHAT_SHUTDOWN_GRACE_SECONDS", default=8.0)
# With Redis, a worker publishes its replies' deltas for other workers in one pipeline per window of
# this length (the first of a quiet spell at once); readers on the worker itself never wait for it.
CHAT_REDIS_PUBLISH_MS = env.int("CHAT_REDIS_PUBLISH_MS", default=50)
CHAT_JOB_DB_THREADS = env.int("CHAT_JOB_DB_THREADS", default=4)
# How long a worker keeps the price overrides and spending caps it read
# (chat/costs/staff_config.py); an edit in the admin reaches the worker that made it at once, the
# others within this time.
CHAT_STAFF_CONFIG_SECONDS = env.float("CHAT_STAFF_CONFIG_SECONDS", default=5.0)
# Idle threads kept for HTTP requests' synchronous work (chatsite/serving/request_threads.py);
# a request never shares one with another in flight, so more concurrent requests start more.
CHAT_REQUEST_THREADS = env.int("CHAT_REQUEST_THREADS", default=32)
CHAT_SSE_PING_SECONDS = env.float("CHAT_SSE_PING_SECONDS", default=15.0)
CHAT_STREAM_RETENTION_SECONDS = env.int("CHAT_STREAM_RETENTION_SECONDS", default=3600)
CHAT_REQUIRE_LOGIN = env.bool("CHAT_REQUIRE_LOGIN", default=False)
CHAT_RATE_LIMIT = env.str("CHAT_RATE_LIMIT", default="20/m")
# Failed sign-ins (the site's and the admin's) per username and per client IP, in
# django-ratelimit's rate syntax; past either, every attempt is refused (429) until the window ends.
CHAT_LOGIN_RATE_LIMIT = env.str("CHAT_LOGIN_RATE_LIMIT", default="10/15m")
CHAT_LOGIN_IP_RATE_LIMIT = env.str("CHAT_LOGIN_IP_RATE_LIMIT", default="50/15m")

# --- Limits (chat/conversations/limits.py; docs/security.md) --------------------------------------
# Sends per person (user or anonymous visitor) and per client IP, shared through the cache.
CHAT_IP_RATE_LIMIT = env.str("CHAT_IP_RATE_LIMIT", default="60/m")
# Replies streaming at once, per person and per client IP (0: no cap).
CHAT_MAX_STREAMING_PER_PERSON = env.int("CHAT_MAX_STREAMING_PER_PERSON", default=3)
CHAT_MAX_STREAMING_PER_IP = env.int("CHAT_MAX_STREAMING_PER_IP", default=20)
# Open readers (WebSocket watches and SSE streams) per person and per IP, in each worker.
CHAT_MAX_READERS_PER_PERSON = env.int("CHAT_MAX_READERS_PER_PERSON", default=8)
CHAT_MAX_READERS_PER_IP = env.int("CHAT_MAX_READERS_PER_IP", default=32)
# Watch frames one WebSocket may send per minute.
CHAT_WATCH_RATE_PER_MINUTE = env.int("CHAT_WATCH_RATE_PER_MINUTE", default=60)
# What Daphne may hold unsent for one connection before it is dropped (the reply goes on and the
# client resumes from where it was).
CHAT_MAX_CONNECTION_BUFFER_BYTES = env.int("CHAT_MAX_CONNECTION_BUFFER_BYTES", default=2 * 2**20)
# How long an SSE reader may take to receive the end of a reply before it is dropped.
CHAT_SSE_DRAIN_SECONDS = env.float("CHAT_SSE_DRAIN_SECONDS", default=30.0)
# Peers whose X-Forwarded-For is believed (addresses or networks, e.g. 127.0.0.1,10.0.0.0/8).
CHAT_TRUSTED_PROXIES = env.list("CHAT_TRUSTED_PROXIES", default=[])
# The most characters one reply may have; past it the reply ends as "too_long", its text kept.
CHAT_MAX_REPLY_CHARS = env.int("CHAT_MAX_REPLY_CHARS", default=200_000)
# Bearer token that /metrics requires; empty: /metrics answers 404.
CHAT_METRICS_TOKEN = env.str("CHAT_METRICS_TOKEN", default="")

# The OpenAI-compatible API at /v1/ (personal API keys); off: its URLs answer 404.
CHAT_API_ENABLED = env.bool("CHAT_API_ENABLED", default=True)
# API requests per key, on top of the per-person and per-IP limits above.
CHAT_API_KEY_RATE_LIMIT = env.str("CHAT_API_KEY_RATE_LIMIT", default="20/m")
# The largest API request body (images come inline as base64 data URLs); other requests keep
# DATA_UPLOAD_MAX_MEMORY_SIZE.
CHAT_API_MAX_BODY_BYTES = env.int("CHAT_API_MAX_BODY_BYTES", default=32 * 1024 * 1024)
# The most images one API request may carry, earlier turns included.
CHAT_API_MAX_IMAGES = env.int("CHAT_API_MAX_IMAGES", default=20)
# Whether the API fetches image URLs (https://…) itself, guarded against SSRF (docs/security.md);
# off: only data URLs are taken.
CHAT_API_FETCH_IMAGE_URLS = env.bool("CHAT_API_FETCH_IMAGE_URLS", default=False)
CHAT_API_FETCH_TIMEOUT_SECONDS = env.float("CHAT_API_FETCH_TIMEOUT_SECONDS", default=10.0)
# Deleting a conversation hides it from its owner and keeps it (marked) for staff; true removes
# its rows from the database instead.
CHAT_PURGE_DELETED = env.bool("CHAT_PURGE_DELETED", default=False)
# "provider:model" of a cheap model that names a conversation after its first reply; empty: the
# conversation keeps its first message as the title.
CHAT_TITLE_MODEL = env.str("CHAT_TITLE_MODEL", default="")
CHAT_SIDEBAR_PAGE_SIZE = env.int("CHAT_SIDEBAR_PAGE_SIZE", default=50)

# Attachments (docs/attachments.md): the largest file, files per message, uploads per person and
# per client IP (django-ratelimit rates; empty: off).
CHAT_MAX_UPLOAD_BYTES = env.int("CHAT_MAX_UPLOAD_BYTES", default=20 * 1024 * 1024)
CHAT_MAX_FILES_PER_MESSAGE = env.int("CHAT_MAX_FILES_PER_MESSAGE", default=10)
CHAT_UPLOAD_RATE_LIMIT = env.str("CHAT_UPLOAD_RATE_LIMIT", default="30/m")
CHAT_UPLOAD_IP_RATE_LIMIT = env.str("CHAT_UPLOAD_IP_RATE_LIMIT", default="60/m")
# Images are re-encoded with their longest side at most this; larger ones are refused unread.
CHAT_IMAGE_MAX_SIDE = env.int("CHAT_IMAGE_MAX_SIDE", default=2048)
CHAT_IMAGE_MAX_PIXELS = env.int("CHAT_IMAGE_MAX_PIXELS", default=50_000_000)
# A document's text is cut (at whole pages, paragraphs or lines) to about this many tokens.
CHAT_ATTACHMENT_MAX_TOKENS = env.int("CHAT_ATTACHMENT_MAX_TOKENS", default=20_000)
# Each upload is read in a child process with these limits.
CHAT_ATTACHMENT_TIMEOUT_SECONDS = env.float("CHAT_ATTACHMENT_TIMEOUT_SECONDS", default=30.0)
CHAT_ATTACHMENT_MEMORY_MB = env.int("CHAT_ATTACHMENT_MEMORY_MB", default=1024)
# The models that take images ("provider:model", shell-style wildcards); others refuse a message
# with an image before anything is sent. The demo model always takes them.
CHAT_VISION_MODELS = env.list(
    "CHAT_VISION_MODELS",
    default=[
        "openai:gpt-4o*",
        "openai:gpt-4.1*",
        "openai:gpt-5*",
        "openai:o3*",
        "openai:o4*",
        "anthropic:claude-*",
    ],
)
CHAT_SEARCH_MAX_RESULTS = env.int("CHAT_SEARCH_MAX_RESULTS", default=30)
