"""`make run` serves through gunicorn from the repository's config: workers forked from a preloaded
master must start, load the model and answer predictions."""

import ctypes
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path

import pytest

from tests.classifier.conftest import lesion_png
from tests.support import servers

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_image(url: str, data: bytes, *, timeout: float = 30) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="lesion.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read())


@pytest.fixture
def server_env():
    """Extra environment for the gunicorn under test."""
    return {}


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory) -> Path:
    """A SQLite database at the latest migrations, made once: each server gets a copy."""
    return servers.migrate(tmp_path_factory.mktemp("database") / "db.sqlite3")


@pytest.fixture(scope="session")
def static_root(tmp_path_factory) -> Path:
    """The pages' static files, collected once: the manifest storage needs them."""
    return servers.collect_static(tmp_path_factory.mktemp("staticfiles"))


@pytest.fixture
def server(tmp_path, server_env, migrated_database, static_root):
    """gunicorn from the repository's config on a copy of the migrated database: (base URL, master process)."""
    database = Path(shutil.copyfile(migrated_database, tmp_path / "db.sqlite3"))
    env = {"DERMAI_STATIC_ROOT": str(static_root), **server_env}
    with servers.gunicorn(database=database, env=env, log=tmp_path / "gunicorn.log") as (process, port, _):
        yield f"http://127.0.0.1:{port}", process


def test_gunicorn_workers_serve_predictions(server, example_image):
    base, process = server
    workers = servers.worker_pids(process.pid)
    assert len(workers) == 2
    for _ in range(4):  # the requests spread over both workers
        status, body = post_image(f"{base}/api/v1/predictions/", example_image)
        assert status == HTTPStatus.OK
        assert abs(sum(p["probability"] for p in body["probabilities"]) - 1) < 1e-3
        assert body["disclaimer"]


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("server_env", [{"DERMAI_THROTTLE_ANON": "120/minute"}])
def test_one_throttle_budget_per_client_across_workers(server):
    base, process = server
    statuses = [status_of(f"{base}/api/v1/classes/") for _ in range(300)]  # one client, well inside a minute
    assert statuses.count(HTTPStatus.OK) == 120
    assert statuses.count(HTTPStatus.TOO_MANY_REQUESTS) == 180
    workers = servers.worker_pids(process.pid)
    assert len(workers) == 2  # the flood recycled no worker


@pytest.mark.parametrize("server_env", [{"DERMAI_THROTTLE_ANON": "120/minute"}])
def test_the_throttle_budget_holds_under_parallel_requests(server):
    # Both workers count the same client at once: a count read by one and written back by the other
    # loses requests (DRF's own throttle, which does that, let up to a quarter more through).
    base, _ = server
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(status_of, [f"{base}/api/v1/classes/"] * 300))
    assert statuses.count(HTTPStatus.OK) == 120
    assert statuses.count(HTTPStatus.TOO_MANY_REQUESTS) == 180


@pytest.mark.parametrize("server_env", [{"DERMAI_WORKER_MAX_RSS_MB": "1"}])
def test_a_worker_over_the_memory_ceiling_answers_and_is_replaced(server, example_image):
    base, process = server

    def workers() -> set[int]:
        return set(servers.worker_pids(process.pid))

    first, answered = workers(), 0
    deadline = time.monotonic() + 60
    while workers() & first and time.monotonic() < deadline:  # over a 1 MB ceiling, each answers once
        status, body = post_image(f"{base}/api/v1/predictions/", example_image)
        assert status == HTTPStatus.OK and body["prediction"]
        answered += 1
    assert not workers() & first and answered >= 2
    while len(workers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers()) == 2


def test_the_default_memory_ceiling_recycles_no_worker(server, example_image):
    base, process = server
    first = servers.worker_pids(process.pid)
    for _ in range(6):
        assert post_image(f"{base}/api/v1/predictions/", example_image)[0] == HTTPStatus.OK
    assert servers.worker_pids(process.pid) == first


@pytest.fixture
def nginx(server, tmp_path):
    """Debian's nginx with deploy/nginx/dermai.conf in front of the gunicorn under test."""
    if shutil.which("nginx") is None:
        message = "nginx not found: `apt-get install nginx` to run the proxy test"
        if os.environ.get("DERMAI_REQUIRE_BROWSER"):  # CI installs it with the browser
            pytest.fail(message)
        pytest.skip(message)
    base, _ = server
    port = free_port()
    with servers.nginx(base.removeprefix("http://"), port, tmp_path):
        yield f"http://127.0.0.1:{port}"


def _stalled_upload(url: str) -> socket.socket:
    """A client that announces a 500 kB upload, sends 10 kB of it and stops."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)))
    headers = (
        "POST /api/v1/predictions/ HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 500000\r\n\r\n"
    )
    connection.sendall(headers.encode() + b"--x\r\n" + b"a" * 10_000)
    return connection


def test_stalled_uploads_behind_nginx_do_not_hold_the_workers(nginx, example_image):
    stalled = [_stalled_upload(nginx) for _ in range(4)]  # twice as many as there are workers
    try:
        time.sleep(1)  # let them reach the proxy
        # With gunicorn's two sync workers exposed directly, this would wait for the stalled
        # clients to time out (30 s); nginx holds their bodies, so it is answered at once.
        status, body = post_image(f"{nginx}/api/v1/predictions/", example_image, timeout=10)
        assert status == HTTPStatus.OK and body["prediction"]
    finally:
        for connection in stalled:
            connection.close()


@pytest.mark.parametrize("server_env", [{"WEB_CONCURRENCY": "1"}])
def test_a_worker_timeout_under_the_api_is_answered_in_json(server):
    base, process = server
    [worker] = servers.worker_pids(process.pid)
    connection = _stalled_upload(base)  # the worker waits inside the view for the rest of the body
    try:
        time.sleep(1)
        os.kill(worker, signal.SIGABRT)  # what gunicorn sends a worker past its timeout
        connection.settimeout(10)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    finally:
        connection.close()
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 500 "), answer[:200]
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["error"]["code"] == "server_error"  # not gunicorn's HTML page


def test_nginx_retries_only_idempotent_requests(tmp_path):
    if shutil.which("nginx") is None:
        pytest.skip("nginx not found: `apt-get install nginx` to run the proxy test")
    tries = []

    class DyingWorker(http.server.BaseHTTPRequestHandler):
        """An upstream whose worker dies with every request but the health check: no answer at all."""

        def do_GET(self):
            if self.path == "/healthz":
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            tries.append("GET")

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            tries.append("POST")

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), DyingWorker) as upstream:
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        port = free_port()
        with servers.nginx(f"127.0.0.1:{upstream.server_address[1]}", port, tmp_path):
            status, _, body = fetch(f"http://127.0.0.1:{port}/api/v1/predictions/", "POST", body=b"x" * 1000)
            # A POST is not sent to the next worker (which a hostile upload would kill too).
            assert tries == ["POST"]
            assert status == HTTPStatus.SERVICE_UNAVAILABLE
            assert json.loads(body)["error"]["code"] == "model_unavailable"
            tries.clear()
            fetch(f"http://127.0.0.1:{port}/api/v1/classes/")
            assert tries == ["GET", "GET"]  # a GET is tried once more
        upstream.shutdown()


def test_nginx_answers_an_oversized_api_upload_in_json(nginx):
    request = urllib.request.Request(
        f"{nginx}/api/v1/predictions/", b"x" * (66 * 1024 * 1024), {"Content-Type": "multipart/form-data; boundary=x"}
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    assert error.value.code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert json.loads(error.value.read())["error"]["code"] == "too_large"


def fetch(
    url: str,
    method: str = "GET",
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    source: str = "127.0.0.1",
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request from the loopback address ``source``; (status, headers, body) whatever the status."""
    host, port = url.removeprefix("http://").split("/", 1)[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60, source_address=(source, 0))
    try:
        connection.request(method, "/" + url.removeprefix("http://").split("/", 1)[1], body, headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def multipart(fields: dict[str, str], image: bytes) -> tuple[bytes, str]:
    """A form's body with its text fields and one image; (body, Content-Type)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="lesion.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post_form(base: str, image: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """The upload form as a browser sends it: the page first (CSRF cookie and token), then the image."""
    status, answer, page = fetch(f"{base}/", headers=headers)
    assert status == HTTPStatus.OK
    cookie = re.search(r"csrftoken=([^;]+)", answer["Set-Cookie"]).group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.decode()).group(1)
    body, content_type = multipart({"csrfmiddlewaretoken": token}, image)
    form_headers = {**(headers or {}), "Content-Type": content_type, "Cookie": f"csrftoken={cookie}"}
    status, _, page = fetch(f"{base}/", "POST", body=body, headers=form_headers)
    return status, page


def files_created(folders: list[Path], action) -> list[str]:
    """Run ``action``; the names of the files created meanwhile in ``folders`` (Linux inotify).

    nginx unlinks a temporary file as soon as it has opened it, so the folder looks empty even while
    an upload is written there: only the creation can be seen.
    """
    in_create = 0x100
    libc = ctypes.CDLL(None, use_errno=True)
    watcher = libc.inotify_init1(os.O_NONBLOCK)
    assert watcher >= 0, os.strerror(ctypes.get_errno())
    try:
        for folder in folders:
            assert libc.inotify_add_watch(watcher, os.fsencode(folder), in_create) >= 0, folder
        action()
        try:
            events = os.read(watcher, 1 << 16)
        except BlockingIOError:
            return []
    finally:
        os.close(watcher)
    names, offset = [], 0
    while offset < len(events):  # struct inotify_event: int wd; uint32 mask, cookie, len; char name[len]
        length = struct.unpack_from("iIII", events, offset)[3]
        names.append(events[offset + 16 : offset + 16 + length].rstrip(b"\0").decode())
        offset += 16 + length
    return names


def test_uploads_stay_in_nginx_memory(nginx, tmp_path):
    image = lesion_png(8)  # the size whose bytes reached nginx's client_body_temp before

    def upload_through_nginx():
        status, _ = post_image(f"{nginx}/api/v1/predictions/", image)
        assert status == HTTPStatus.OK
        status, page = post_form(nginx, image)
        assert status == HTTPStatus.OK and b"data:image/png;base64," in page

    # Neither the uploads nor the answers (the result page carries the image as the model saw it).
    assert files_created([tmp_path / "client_body", tmp_path / "proxy"], upload_through_nginx) == []


SECURE_BEHIND_TLS = {
    "DJANGO_SECURE": "true",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    "DERMAI_NUM_PROXIES": "1",
}
TERMINATOR = {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on"}  # what a TLS terminator may send


@pytest.mark.parametrize("server_env", [SECURE_BEHIND_TLS])
def test_behind_a_tls_terminator_the_site_knows_it_is_https(nginx):
    status, headers, _ = fetch(f"{nginx}/", headers=TERMINATOR)
    assert status == HTTPStatus.OK  # not gunicorn's 400 for X-Forwarded-Ssl
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    # A browser's form post names the https origin; the CSRF check must see the same scheme.
    status, page = post_form(nginx, lesion_png(0.5), {**TERMINATOR, "Origin": "https://127.0.0.1"})
    assert status == HTTPStatus.OK, page.decode()[:500]
    assert b"data:image/png;base64," in page


@pytest.mark.parametrize("server_env", [SECURE_BEHIND_TLS])
def test_an_untrusted_client_cannot_claim_https_through_nginx(nginx):
    status, headers, _ = fetch(f"{nginx}/api/v1/classes/", headers=TERMINATOR, source="127.0.0.2")
    assert status == HTTPStatus.OK
    assert "Strict-Transport-Security" not in headers  # nginx forwarded its own scheme, http


@pytest.mark.parametrize("server_env", [{"DERMAI_ADMIN_LOGIN_RATE": "1000/minute"}])  # only nginx limits here
def test_nginx_limits_admin_login_attempts_per_address(nginx):
    login = f"{nginx}/admin/login/"
    statuses = [fetch(login, "POST", body=b"username=x&password=y")[0] for _ in range(10)]
    # One attempt, and a burst of five more, reach Django (which refuses them: no CSRF token).
    assert HTTPStatus.TOO_MANY_REQUESTS not in statuses[:6]
    assert statuses[6:] == [HTTPStatus.TOO_MANY_REQUESTS] * 4
    assert fetch(login)[0] == HTTPStatus.OK  # the form itself is not limited
    assert fetch(login, "POST", body=b"username=x&password=y", source="127.0.0.2")[0] != HTTPStatus.TOO_MANY_REQUESTS


def test_gunicorn_stops_with_one_clear_line_when_the_checkpoint_cannot_be_loaded(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dermai_site.settings",  # the site's, not the tests'
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DERMAI_BIND": f"127.0.0.1:{free_port()}",
        "WEB_CONCURRENCY": "1",
        "DERMAI_CHECKPOINT": str(tmp_path / "missing.pt"),
    }
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--access-logfile", "/dev/null"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0  # the master stops instead of respawning workers forever
    assert f"DermAI cannot start: the model checkpoint {tmp_path / 'missing.pt'} cannot be loaded" in result.stderr
