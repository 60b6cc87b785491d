import os
import secrets
import subprocess
import sys
from http import HTTPStatus

import pytest
from django.urls import reverse
from rest_framework.throttling import AnonRateThrottle

from tests.classifier.conftest import upload
from tests.conftest import ROOT


def _deploy_check(**env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), **env}
    environment.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests in this process
    command = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)


def test_deploy_checks_pass_in_production():
    result = _deploy_check(DJANGO_SECURE="true", DJANGO_ALLOWED_HOSTS="dermai.example.org")
    assert result.returncode == 0, result.stderr


def test_deploy_checks_pass_behind_a_tls_proxy():
    result = _deploy_check(
        DJANGO_SECURE="true",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
        DJANGO_ALLOWED_HOSTS="dermai.example.org",
    )
    assert result.returncode == 0, result.stderr


def test_production_settings_refuse_to_start_without_a_secret_key():
    environment = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    command = [sys.executable, "manage.py", "check"]
    result = subprocess.run(
        command, cwd=ROOT, env={**environment, "DJANGO_SECURE": "true"}, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DJANGO_SECURE=true needs DJANGO_SECRET_KEY" in result.stderr


def test_hsts_subdomains_and_preload_are_opt_in():
    result = _deploy_check(
        DJANGO_SECURE="true",
        DJANGO_ALLOWED_HOSTS="dermai.example.org",
        DJANGO_SECURE_HSTS_PRELOAD="true",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
    )
    assert result.returncode == 0, result.stderr
    command = [
        sys.executable,
        "-c",
        "from django.conf import settings as s; print(s.SECURE_HSTS_PRELOAD, s.SECURE_HSTS_INCLUDE_SUBDOMAINS)",
    ]
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "dermai_site.settings", "DJANGO_SECRET_KEY": "x" * 50}
    default = subprocess.run(
        command, cwd=ROOT, env={**environment, "DJANGO_SECURE": "true"}, capture_output=True, text=True
    )
    assert default.stdout.split() == ["False", "False"]


def test_deploy_checks_flag_the_local_defaults():
    result = _deploy_check()
    assert result.returncode != 0
    assert "SECURE_HSTS_SECONDS" in result.stderr


@pytest.mark.django_db
def test_anonymous_api_clients_are_throttled(client, monkeypatch, example_image):
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "2/minute"})
    for _ in range(2):
        assert client.get(reverse("api-classes")).status_code == HTTPStatus.OK
    response = client.get(reverse("api-classes"))
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert response.json()["error"]["code"] == "throttled"
    assert "Retry-After" in response


@pytest.mark.django_db
def test_a_forged_forwarded_for_header_does_not_escape_the_throttle(client, monkeypatch):
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "2/minute"})
    statuses = [client.get(reverse("api-classes"), HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code for i in range(3)]
    assert statuses == [HTTPStatus.OK, HTTPStatus.OK, HTTPStatus.TOO_MANY_REQUESTS]


@pytest.mark.django_db
def test_the_upload_form_shares_the_api_budget(client, monkeypatch, example_image):
    monkeypatch.setattr(AnonRateThrottle, "THROTTLE_RATES", {"anon": "2/minute"})
    assert client.get(reverse("api-classes")).status_code == HTTPStatus.OK
    assert client.post(reverse("home"), {"image": upload(example_image)}).status_code == HTTPStatus.OK
    response = client.post(reverse("home"), {"image": upload(example_image)})
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "Too many images from your address; try again in" in response.content.decode()
    assert 'type="file"' in response.content.decode()
