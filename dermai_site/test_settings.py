"""The test suite's settings: the site's own, with a per-process cache and a fast password hasher.

Tests that need the shared database cache (the throttle's atomic counter) ask for it with the
``database_cache`` fixture; servers and ``manage.py`` subprocesses started by tests run
``dermai_site.settings`` itself.
"""

from dermai_site.settings import *  # noqa: F403

SHARED_CACHES = CACHES  # noqa: F405
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Hashing a password properly takes most of a second on purpose; the login tests need not wait.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
