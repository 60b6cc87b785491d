"""Shared pieces of the benchmarks: test images, a gunicorn server on loopback, a tiny HTTP client."""

import http.client
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LESION = ROOT / "examples" / "images" / "ISIC_0024306.jpg"
HOST, PORT = "127.0.0.1", 8765


def lesion_jpeg(size: tuple[int, int]) -> bytes:
    """The example lesion resampled to ``size`` and saved as a JPEG, like a camera would."""
    buffer = io.BytesIO()
    Image.open(LESION).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "n": len(ordered),
        "median_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version()}


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2))
    return path


@contextmanager
def gunicorn(workers: int = 2):
    """gunicorn from the repository's config on loopback; yields (master pid, seconds until /readyz)."""
    env = {
        **os.environ,
        "DERMAI_BIND": f"{HOST}:{PORT}",
        "WEB_CONCURRENCY": str(workers),
        "DERMAI_THROTTLE_ANON": "1000000/minute",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--access-logfile", "/dev/null"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while get("/readyz")[0] != 200:
            if process.poll() is not None or time.perf_counter() - started > 120:
                raise RuntimeError("gunicorn did not become ready")
            time.sleep(0.05)
        yield process.pid, time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def get(path: str, *, port: int = PORT) -> tuple[int, bytes]:
    try:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""


def post_image(data: bytes, name: str = "lesion.jpg", path: str = "/api/v1/predictions/", *, port: int = PORT) -> int:
    """POST one multipart upload; returns the status (0 for a connection error)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    try:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        connection.request("POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0


@contextmanager
def nginx(upstream: str, port: int, folder: Path):
    """Debian's nginx with deploy/nginx/dermai.conf on ``port``, in front of ``upstream`` (host:port).

    Its configuration, pid file and temporary files live in ``folder``; yields the nginx process.
    """
    site = (ROOT / "deploy" / "nginx" / "dermai.conf").read_text()
    site = site.replace("127.0.0.1:8000", upstream).replace("listen 8080;", f"listen {HOST}:{port};")
    site = site.replace("/srv/dermai/staticfiles/", f"{ROOT / 'static'}/")
    temp = "".join(
        f"{name}_temp_path {folder / name};\n" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = folder / "nginx.conf"
    config.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # its workers must reach the files in folder
        + f"daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
        + "events { worker_connections 256; }\nhttp {\naccess_log off;\n"
        + temp
        + site
        + "\n}\n"
    )
    process = subprocess.Popen(["nginx", "-c", str(config), "-p", str(folder)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while get("/healthz", port=port)[0] != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def server_cpu_seconds(master: int) -> tuple[float, float]:
    """User and system CPU seconds used so far by gunicorn: the master, its live workers, and the
    workers it has already replaced (``max_requests`` recycles them during a long run)."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in [master, *worker_pids(master)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a worker that exited just now; its time moves to the master's children
            continue
        user += int(fields[11]) / ticks
        system += int(fields[12]) / ticks
        if pid == master:  # cutime and cstime: the workers that have exited and been reaped
            user += int(fields[13]) / ticks
            system += int(fields[14]) / ticks
    return user, system


def rss_mb(pid: int) -> float:
    return memory_mb(pid)["rss"]


def memory_mb(pid: int) -> dict[str, float]:
    """A process's resident memory: RSS counts pages shared with the gunicorn master and the other
    workers in full, PSS divides them among the sharers, USS is what this process alone holds."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    return {
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "uss": fields["Private_Clean"] + fields["Private_Dirty"],
    }
