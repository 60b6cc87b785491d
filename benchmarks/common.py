"""Shared pieces of the benchmarks: test images, a tiny HTTP client, what gunicorn costs.

The servers themselves come from ``tests.support.servers``, which the tests launch too.
"""

import http.client
import io
import json
import os
import platform
import statistics
import uuid
from pathlib import Path

from PIL import Image

from tests.support.servers import HOST, worker_pids

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LESION = ROOT / "examples" / "images" / "ISIC_0024306.jpg"
PORT = 8765  # gunicorn; nginx, where a benchmark starts it, on the next port
# The load comes from one address: the throttle would refuse most of it.
UNTHROTTLED = {"DERMAI_THROTTLE_ANON": "1000000/minute"}


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


def multipart(files: list[tuple[str, bytes]], *, field: str = "image") -> tuple[bytes, str]:
    """A multipart/form-data body with each (file name, bytes) under ``field``; and its content type."""
    boundary = uuid.uuid4().hex
    parts = [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request(
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    port: int = PORT,
    source: str = HOST,
    timeout: float = 60,
) -> tuple[int, bytes, http.client.HTTPMessage]:
    """One request on a fresh connection from the loopback address ``source``: status, body and
    headers (0, no body, no headers for a connection error or a timeout)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout, source_address=(source, 0))
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, response.read(), response.msg
    except (OSError, http.client.HTTPException):  # refused, reset, timed out, cut off mid-answer
        return 0, b"", http.client.HTTPMessage()
    finally:
        connection.close()


def post_image(data: bytes, name: str = "lesion.jpg", path: str = "/api/v1/predictions/", *, port: int = PORT) -> int:
    """POST one multipart upload; returns the status (0 for a connection error)."""
    body, content_type = multipart([(name, data)])
    return request("POST", path, body, {"Content-Type": content_type}, port=port, timeout=30)[0]


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
