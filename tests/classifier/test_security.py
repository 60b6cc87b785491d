import os
import secrets
import subprocess
import sys
from http import HTTPStatus

import pytest
from django.urls import reverse
from rest_framework.throttling import AnonRateThrottle

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
