"""Refuse, before anything reads it, a request body over the upload cap or without a declared length;
and admin login attempts beyond the rate one address may make."""

import logging
from http import HTTPStatus

from django.http import HttpResponse
from django.urls import get_resolver, reverse
from django.utils.translation import gettext as _

from classifier.errors import json_error, request_too_large
from classifier.throttles import AdminLoginThrottle, client_address
from classifier.uploads import declared_too_large, unmeasured_body

logger = logging.getLogger(__name__)


def upload_size_limit(get_response):
    def middleware(request):
        if unmeasured_body(request):
            # Without Content-Length the size cannot be checked before reading, and a WSGI server
            # may pass an empty body: refuse clearly instead of answering "no file".
            return json_error("length_required")
        if not declared_too_large(request):
            return get_response(request)
        # Answered like Django's own 400, 404 and 500: by the URLconf's handler (dermai_site.urls'
        # handler413), JSON under /api/ and the upload form elsewhere.
        handler = get_resolver(getattr(request, "urlconf", None)).resolve_error_handler(413)
        return handler(request, request_too_large())

    return middleware


def admin_login_rate_limit(get_response):
    """Answer 429 to admin login attempts beyond ``DERMAI_ADMIN_LOGIN_RATE`` from one address.

    django-axes locks out a user name and address pair after repeated failures; a fresh user name
    per attempt never trips it, yet every attempt costs a password hash. This bounds the attempts of
    one address whatever the names (nginx's ``limit_req`` does the same in front, deploy/nginx).
    """

    def middleware(request):
        if request.method != "POST" or request.path_info != reverse("admin:login"):
            return get_response(request)
        throttle = AdminLoginThrottle()
        if throttle.allow_request(request, view=None):
            return get_response(request)
        logger.warning("admin login attempts from %s over the limit: refused", client_address(request))
        seconds = int(throttle.wait())
        message = _("Too many login attempts from your address; try again in %(s)d seconds.") % {"s": seconds}
        response = HttpResponse(message, status=HTTPStatus.TOO_MANY_REQUESTS, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(seconds)
        return response

    return middleware
