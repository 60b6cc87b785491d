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
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dermai_site.settings",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        **env,
    }
    environment.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests in this process
    command = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)


PRODUCTION = {"DJANGO_SECURE": "true", "DJANGO_ALLOWED_HOSTS": "dermai.example.org"}


@pytest.mark.slow  # each case boots Django in a subprocess
@pytest.mark.parametrize(
    "env",
    [
        PRODUCTION,
        {
            **PRODUCTION,
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
        },
        {**PRODUCTION, "DJANGO_SECURE_HSTS_PRELOAD": "true", "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true"},
    ],
    ids=["production", "behind-a-tls-proxy", "hsts-preload-and-subdomains"],
)
def test_deploy_checks_pass(env):
    result = _deploy_check(**env)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_deploy_checks_flag_the_local_defaults():
    result = _deploy_check()
    assert result.returncode != 0
    assert "SECURE_HSTS_SECONDS" in result.stderr


def _check_in_production(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    command = [sys.executable, "manage.py", "check"]
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**environment, "DJANGO_SETTINGS_MODULE": "dermai_site.settings", "DJANGO_SECURE": "true", **env},
        capture_output=True,
        text=True,
    )


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = _check_in_production()
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        "DJANGO_SECURE=true needs DJANGO_SECRET_KEY: set one secret shared by every host"
    ]


@pytest.mark.parametrize(
    "key",
    [
        "!",
        secrets.token_urlsafe(50)[:49],  # one short of Django's minimum
        "ab" * 30,  # long enough, but two different characters
        "django-insecure-" + secrets.token_urlsafe(50),  # Django's generated development keys
    ],
    ids=["one-character", "49-characters", "two-characters", "django-insecure"],  # the same on every xdist worker
)
def test_production_settings_refuse_to_start_with_a_weak_secret_key(key):
    result = _check_in_production(DJANGO_SECRET_KEY=key)
    assert result.returncode != 0
    [line] = result.stderr.splitlines()  # one line, no traceback
    assert line.startswith(
        "DJANGO_SECURE=true needs a strong DJANGO_SECRET_KEY: "
        f"this one has {len(key)} characters, {len(set(key))} different; at least 50 characters"
    )
    assert key not in line  # the secret itself is never printed


@pytest.mark.slow
def test_hsts_subdomains_and_preload_are_opt_in():
    command = [
        sys.executable,
        "-c",
        "from django.conf import settings as s; print(s.SECURE_HSTS_PRELOAD, s.SECURE_HSTS_INCLUDE_SUBDOMAINS)",
    ]
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dermai_site.settings",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    }
    default = subprocess.run(
        command, cwd=ROOT, env={**environment, "DJANGO_SECURE": "true"}, capture_output=True, text=True
    )
    assert default.stdout.split() == ["False", "False"]


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


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/about/", "/model-card/", "/api/v1/classes/", "/api/v1/docs/", "/admin/login/"])
def test_every_page_sends_a_content_security_policy(client, path):
    policy = client.get(path)["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    if path == "/api/v1/docs/":  # Swagger UI styles itself inline: styles only, never scripts
        assert "style-src 'self' 'unsafe-inline'" in policy and "script-src" not in policy
    else:
        assert "'unsafe-inline'" not in policy


@pytest.mark.django_db
def test_admin_login_locks_out_after_repeated_failures_and_logs_them(client, admin_user, settings, caplog):
    url = reverse("admin:login")
    statuses = [
        client.post(url, {"username": "admin", "password": "wrong"}).status_code
        for _ in range(settings.AXES_FAILURE_LIMIT)
    ]
    # The form again with its error, until the last allowed failure locks the pair out.
    assert statuses == [HTTPStatus.OK] * (settings.AXES_FAILURE_LIMIT - 1) + [HTTPStatus.TOO_MANY_REQUESTS]
    response = client.post(url, {"username": "admin", "password": "password"})  # the right one, too late
    assert response.status_code == HTTPStatus.TOO_MANY_REQUESTS
    assert "_auth_user_id" not in client.session
    failures = [r for r in caplog.records if r.name.startswith("axes") and "login failed" in r.getMessage()]
    assert len(failures) >= settings.AXES_FAILURE_LIMIT  # every failed attempt is logged (the locked one too)
    # Another address may still try.
    other = client.post(url, {"username": "admin", "password": "password"}, REMOTE_ADDR="192.0.2.7")
    assert other.status_code == HTTPStatus.FOUND
