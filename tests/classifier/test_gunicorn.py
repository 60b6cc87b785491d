"""`make run` serves through gunicorn from the repository's config: workers forked from a preloaded
master must start, load the model and answer predictions."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from http import HTTPStatus
from pathlib import Path

import pytest

from benchmarks.common import nginx as proxy

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


@pytest.fixture
def server(tmp_path, server_env):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DERMAI_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        **server_env,
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--access-logfile", "/dev/null"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
                if response.status == HTTPStatus.OK:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"gunicorn did not become ready: {process.communicate()[1].decode()[-2000:]}")
        time.sleep(0.2)
    yield base, process
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def test_gunicorn_workers_serve_predictions(server, example_image):
    base, process = server
    workers = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(workers) == 2
    for _ in range(4):  # the requests spread over both workers
        status, body = post_image(f"{base}/api/v1/predictions/", example_image)
        assert status == HTTPStatus.OK
        assert abs(sum(p["probability"] for p in body["probabilities"]) - 1) < 1e-3
        assert body["disclaimer"]


@pytest.mark.parametrize("server_env", [{"DERMAI_THROTTLE_ANON": "120/minute"}])
def test_one_throttle_budget_per_client_across_workers(server):
    base, process = server
    statuses = []
    for _ in range(300):  # one client, well inside a minute
        try:
            with urllib.request.urlopen(f"{base}/api/v1/classes/", timeout=10) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
    assert statuses.count(HTTPStatus.OK) == 120
    assert statuses.count(HTTPStatus.TOO_MANY_REQUESTS) == 180
    workers = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(workers) == 2  # the flood recycled no worker


@pytest.mark.parametrize("server_env", [{"DERMAI_WORKER_MAX_RSS_MB": "1"}])
def test_a_worker_over_the_memory_ceiling_answers_and_is_replaced(server, example_image):
    base, process = server

    def workers() -> set[str]:
        return set(Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split())

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
    first = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    for _ in range(6):
        assert post_image(f"{base}/api/v1/predictions/", example_image)[0] == HTTPStatus.OK
    assert Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split() == first


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
    with proxy(base.removeprefix("http://"), port, tmp_path):
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


def test_nginx_answers_an_oversized_api_upload_in_json(nginx):
    request = urllib.request.Request(
        f"{nginx}/api/v1/predictions/", b"x" * (66 * 1024 * 1024), {"Content-Type": "multipart/form-data; boundary=x"}
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    assert error.value.code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert json.loads(error.value.read())["error"]["code"] == "too_large"


def test_gunicorn_stops_with_one_clear_line_when_the_checkpoint_cannot_be_loaded(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DERMAI_BIND": f"127.0.0.1:{free_port()}",
        "WEB_CONCURRENCY": "1",
        "DERMAI_CHECKPOINT": str(tmp_path / "missing.pt"),
    }
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--access-logfile", "/dev/null"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0  # the master stops instead of respawning workers forever
    assert f"DermAI cannot start: the model checkpoint {tmp_path / 'missing.pt'} cannot be loaded" in result.stderr
