"""Counting clients: their address (one rule for the throttle, the admin lockout and the logs) and
throttles that count atomically in the shared cache."""

import ipaddress

from django.http import HttpRequest
from rest_framework import throttling


def client_address(request: HttpRequest) -> str:
    """The client's IP address, by DRF's rule: with ``DERMAI_NUM_PROXIES`` = 0 the socket's address,
    with n > 0 the n-th ``X-Forwarded-For`` entry from the right (the one our own proxy wrote).

    The throttles, django-axes (``AXES_CLIENT_IP_CALLABLE``) and the admin login limit all call this.
    A forwarded entry that is not an IP address (a client writing the header where no proxy
    overwrites it) counts as the socket's address.
    """
    address = throttling.BaseThrottle().get_ident(request)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return request.META.get("REMOTE_ADDR", "")
    return address


class AnonRateThrottle(throttling.AnonRateThrottle):
    """DRF's throttle for anonymous clients, counted in fixed windows with atomic cache operations.

    DRF's own throttle reads a client's request history, then writes it back: two workers answering
    the same client at once both read the old history, and under load a fifth more requests got
    through. Here the first request of a window creates the client's counter, expiring with the
    window (``cache.add``), and every request increments it in one atomic step (``cache.incr``,
    made atomic for the database cache by ``dermai_site.cache.DatabaseCache``). A window opens with
    a client's first request after the previous one ended.

    A batch counts once per file: DRF counts its request as one, the view counts the other files
    (``count``) once it knows how many there are.
    """

    def get_ident(self, request: HttpRequest) -> str:
        return client_address(request)

    def allow_request(self, request, view, *, count: int = 1) -> bool:
        """Count ``count`` requests for this client; whether it is still within its rate."""
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:  # a signed-in user
            return True
        if self.cache.add(key, count, self.duration):
            return count <= self.num_requests  # the first of a new window
        try:
            return self.cache.incr(key, count) <= self.num_requests
        except ValueError:  # the window ended between the two calls: these requests open the next
            self.cache.add(key, count, self.duration)
            return count <= self.num_requests

    def wait(self) -> float:
        """Seconds until the client may try again: at most one window, which opened before this request."""
        return float(self.duration)


class AdminLoginThrottle(AnonRateThrottle):
    """Admin login attempts per address (``DERMAI_ADMIN_LOGIN_RATE``), whatever the user names."""

    scope = "admin_login"
