"""Soak: 8 clients for 60 s through nginx mixing good, bad, hostile and stalled uploads, a worker
killed half-way (loopback only)."""

import argparse
import io
import itertools
import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import PORT, UNTHROTTLED, lesion_jpeg, post_image, rss_mb, save
from tests.support.hostile import scan_bomb, zero_png
from tests.support.servers import HOST, gunicorn, nginx, worker_pids

PROXY_PORT = PORT + 1


def noise_jpeg() -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (450, 600, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# (bytes, file name, the statuses the API documents for it)
UPLOADS = [
    (lesion_jpeg((600, 450)), "good.jpg", {200}),
    (b"not an image", "bad.jpg", {415}),
    (lesion_jpeg((600, 450))[:3000], "truncated.jpg", {400}),
    (lesion_jpeg((1200, 900)), "good-large.jpg", {200}),
    (scan_bomb(), "scan-bomb.jpg", {422}),
    (zero_png(), "zeros.png", {422}),
    (noise_jpeg(), "noise.jpg", {422}),
]


def stall(seconds: float) -> None:
    """One client that keeps announcing uploads and stalling them, four at a time."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        connections = []
        for _ in range(4):
            connection = socket.create_connection((HOST, PROXY_PORT))
            connection.sendall(
                b"POST /api/v1/predictions/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 500000\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\n\r\n--x\r\n" + b"a" * 10_000
            )
            connections.append(connection)
        time.sleep(min(10, max(0, deadline - time.perf_counter())))
        for connection in connections:
            connection.close()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)
    statuses: dict[int, int] = {}
    unexpected = 0
    lock = threading.Lock()
    folder = Path(tempfile.mkdtemp(prefix="dermai-soak-"))
    with gunicorn(PORT, workers=2, env=UNTHROTTLED) as (master, _), nginx(f"{HOST}:{PORT}", PROXY_PORT, folder):
        deadline = time.perf_counter() + args.seconds
        staller = threading.Thread(target=stall, args=(args.seconds,))
        staller.start()

        def client(offset: int) -> None:
            nonlocal unexpected
            for data, name, expected in itertools.islice(itertools.cycle(UPLOADS), offset, None):
                if time.perf_counter() >= deadline:
                    return
                status = post_image(data, name, port=PROXY_PORT)
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    unexpected += status not in expected | {0}

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        rss_samples, killed, replaced = [], None, False
        while any(t.is_alive() for t in threads):
            time.sleep(5)
            pids = worker_pids(master)
            rss_samples.append([round(rss_mb(pid)) for pid in pids])
            if killed is None and time.perf_counter() > deadline - args.seconds / 2 and pids:
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)  # gunicorn must replace it
            elif killed is not None and killed not in pids and len(pids) == 2:
                replaced = True
        for thread in [*threads, staller]:
            thread.join()
    server_errors = sum(n for status, n in statuses.items() if status >= 500)
    print(f"{args.clients} clients × {args.seconds:.0f} s: {sum(statuses.values())} requests, statuses {statuses}")
    print(
        f"5xx: {server_errors}; unexpected statuses: {unexpected}; connection errors: {statuses.get(0, 0)} "
        f"(requests in flight on the killed worker)"
    )
    print(f"worker {killed} killed half-way; replaced by gunicorn: {replaced}")
    print("worker RSS (MB) every 5 s: " + " ".join(str(s) for s in rss_samples))
    path = save(
        "soak",
        {
            "clients": args.clients,
            "seconds": args.seconds,
            "statuses": statuses,
            "server_errors": server_errors,
            "unexpected": unexpected,
            "killed_worker_replaced": replaced,
            "worker_rss_mb": rss_samples,
        },
    )
    print(f"wrote {path}")
    return {"server_errors": server_errors, "replaced": replaced}


if __name__ == "__main__":
    main()
