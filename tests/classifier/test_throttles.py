"""The client's address, one rule for the throttle, django-axes and the admin login limit; the
throttles' atomic counters."""

import logging
from http import HTTPStatus

import pytest
from axes.models import AccessAttempt
from django.core.cache import cache
from django.db import connection
from django.test import RequestFactory
from django.urls import reverse

from classifier.throttles import AnonRateThrottle, client_address
from tests.classifier.conftest import upload
from tests.conftest import EXAMPLES

BEHIND_NGINX = {"REMOTE_ADDR": "127.0.0.1"}  # every request reaches gunicorn from nginx
LESION = EXAMPLES / "images" / "ISIC_0024306.jpg"


@pytest.fixture
def behind_one_proxy(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}


def forwarded(address: str) -> dict[str, str]:
    """What nginx sends for a client at ``address``."""
    return {**BEHIND_NGINX, "HTTP_X_FORWARDED_FOR": address}


def test_without_proxies_the_address_is_the_sockets_whatever_the_client_writes():
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert client_address(request) == "192.0.2.1"


def test_behind_one_proxy_the_address_is_the_one_the_proxy_wrote(behind_one_proxy):
    # The client wrote the first entry itself; nginx appended (or set) the last one.
    request = RequestFactory().get("/", **forwarded("203.0.113.9, 198.51.100.4"))
    assert client_address(request) == "198.51.100.4"


def test_a_forwarded_entry_that_is_not_an_address_counts_as_the_socket(behind_one_proxy):
    request = RequestFactory().get("/", **forwarded("<script>"))
    assert client_address(request) == "127.0.0.1"


@pytest.mark.django_db
def test_behind_nginx_the_admin_lockout_is_per_client_not_per_proxy(client, admin_user, settings, behind_one_proxy):
    url = reverse("admin:login")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(url, {"username": "admin", "password": "wrong"}, **forwarded("203.0.113.1"))
    locked = client.post(url, {"username": "admin", "password": "password"}, **forwarded("203.0.113.1"))
    assert locked.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert list(AccessAttempt.objects.values_list("username", "ip_address")) == [("admin", "203.0.113.1")]
    # The same proxy, another client: the admin is not locked out for everyone.
    other = client.post(url, {"username": "admin", "password": "password"}, **forwarded("203.0.113.2"))
    assert other.status_code == HTTPStatus.FOUND


@pytest.mark.django_db
def test_admin_login_attempts_are_limited_per_address_whatever_the_user_names(
    client, monkeypatch, behind_one_proxy, caplog
):
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "120/minute", "admin_login": "3/minute"})
    url = reverse("admin:login")

    def attempt(n: int, address: str):
        return client.post(url, {"username": f"user{n}", "password": "wrong"}, **forwarded(address))

    assert [attempt(n, "203.0.113.1").status_code for n in range(3)] == [HTTPStatus.OK] * 3
    refused = attempt(3, "203.0.113.1")
    assert refused.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert int(refused["Retry-After"]) == 60
    assert "Too many login attempts from your address" in refused.content.decode()
    assert AccessAttempt.objects.count() == 3  # the refused attempt checked no password
    assert any("203.0.113.1" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert client.get(url, **forwarded("203.0.113.1")).status_code == HTTPStatus.OK  # the form is not limited
    assert attempt(4, "203.0.113.2").status_code == HTTPStatus.OK  # nor another client


def test_a_throttle_window_counts_every_request_and_closes_after_its_length(client, monkeypatch, database_cache):
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "3/minute"})
    statuses = [client.get(reverse("api-classes")).status_code for _ in range(5)]
    assert statuses == [HTTPStatus.OK] * 3 + [HTTPStatus.TOO_MANY_REQUESTS] * 2
    [key] = [k for k in _cache_keys() if "throttle_anon_" in k]
    _expire(key)  # the minute is over
    assert client.get(reverse("api-classes")).status_code == HTTPStatus.OK


def _batch(n: int) -> list:
    return [upload(LESION.read_bytes(), f"{i}.jpg") for i in range(n)]


@pytest.mark.django_db
def test_a_batch_counts_each_of_its_files_against_the_rate(client, monkeypatch, untrained_model):
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "5/minute"})
    assert client.post(reverse("api-batch"), {"images": _batch(3)}).status_code == HTTPStatus.OK
    refused = client.post(reverse("api-batch"), {"images": _batch(3)})  # files 4 to 6 of 5 a minute
    assert refused.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert refused.json()["error"]["code"] == "throttled"
    assert int(refused["Retry-After"]) == 60


@pytest.mark.django_db
def test_a_batch_larger_than_the_rate_is_refused_at_once(client, monkeypatch, untrained_model):
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "5/minute"})
    assert client.post(reverse("api-batch"), {"images": _batch(6)}).status_code == HTTPStatus.TOO_MANY_REQUESTS


@pytest.mark.django_db
def test_the_upload_forms_batch_counts_each_file_too(client, monkeypatch, untrained_model):
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "5/minute"})
    assert client.post(reverse("home"), {"image": _batch(3)}).status_code == HTTPStatus.OK
    refused = client.post(reverse("home"), {"image": _batch(3)})
    assert refused.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "Too many images from your address" in refused.content.decode()
    # The API shares the budget: one image more is one too many.
    assert client.post(reverse("api-predictions"), {"image": _batch(1)[0]}).status_code == HTTPStatus.TOO_MANY_REQUESTS


def test_the_database_cache_increments_in_place_and_keeps_the_expiry(database_cache):
    cache.add("counter", 1, 60)
    before = _expiry(cache.make_key("counter"))
    assert [cache.incr("counter") for _ in range(3)] == [2, 3, 4]
    assert cache.incr("counter", 5) == 9  # a batch's files in one step
    assert cache.get("counter") == 9
    assert _expiry(cache.make_key("counter")) == before  # Django's own incr would move it to the default
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")


def _cache_keys() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT cache_key FROM dermai_cache")
        return [row[0] for row in cursor.fetchall()]


def _expiry(key: str):
    with connection.cursor() as cursor:
        cursor.execute("SELECT expires FROM dermai_cache WHERE cache_key = %s", [key])
        return cursor.fetchone()[0]


def _expire(key: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE dermai_cache SET expires = %s WHERE cache_key = %s", ["2000-01-01 00:00:00", key])
