"""HTTP throughput and latency of gunicorn (the repository's config) on loopback, and its cold start."""

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import (
    PORT,
    UNTHROTTLED,
    lesion_jpeg,
    memory_mb,
    post_image,
    save,
    server_cpu_seconds,
    summary,
)
from ml import SHIPPED_CHECKPOINT
from tests.support.servers import gunicorn, migrate, worker_pids


def load(data: bytes, *, concurrency: int, seconds: float, master: int) -> dict:
    """``concurrency`` clients posting ``data`` back to back for ``seconds``; bounded in time.

    Also reports the CPU gunicorn (``master`` and its workers) spent per request, user and system.
    """
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status = post_image(data)
            with lock:
                latencies.append(time.perf_counter() - started)
                errors += status != 200

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    cpu_started = time.process_time()  # the load generator shares the machine's cores with gunicorn
    server_started = server_cpu_seconds(master)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    user, system = (after - before for after, before in zip(server_cpu_seconds(master), server_started))
    return {
        "client_cpu_percent": 100 * (time.process_time() - cpu_started) / elapsed,
        "server_user_ms_per_request": 1000 * user / len(latencies),
        "server_system_ms_per_request": 1000 * system / len(latencies),
        "concurrency": concurrency,
        "requests_per_s": len(latencies) / elapsed,
        "errors": errors,
        **summary(latencies),
    }


class InProcess:
    """Our inference path in this process on one torch thread, with the workers' allocator
    settings: the reference for the throughput target (2 workers ≥ 80 % of twice its rate)."""

    def __init__(self, data: bytes, checkpoint: Path) -> None:
        import torch

        from dermai_site.memory import keep_freed_memory
        from ml.inference import Predictor

        keep_freed_memory()
        torch.set_num_threads(1)
        self.data = data
        self.checkpoint = checkpoint
        self.predictor = Predictor(checkpoint)

    def rate(self, *, seconds: float) -> float:
        """Images per second, classified back to back for ``seconds``."""
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            self.predictor.assess(self.predictor.read(self.data, guard=True).unsqueeze(0))
            count += 1
        return count / (time.perf_counter() - started)


def web_stack_cost(reference: InProcess, *, database: Path, rounds: int = 6, seconds: float = 2) -> dict[str, float]:
    """CPU milliseconds per image of the inference path alone and of a whole API request through
    Django in this process (test client: middleware, DRF, multipart, throttle, JSON answer), taking
    turns; what Django and DRF add before gunicorn, sockets and the load generator do. ``database``
    is the migrated SQLite file the site's cache and throttle use (the server's)."""
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dermai_site.settings")
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ["DERMAI_THROTTLE_ANON"] = "1000000/minute"
    os.environ["DERMAI_CHECKPOINT"] = str(reference.checkpoint)
    django.setup()
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")

    def request() -> None:
        response = client.post("/api/v1/predictions/", {"image": SimpleUploadedFile("lesion.jpg", reference.data)})
        if response.status_code != 200:
            raise RuntimeError(f"the API answered {response.status_code}: {response.content[:200]!r}")

    def inference() -> None:
        reference.predictor.assess(reference.predictor.read(reference.data, guard=True).unsqueeze(0))

    milliseconds: dict[str, list[float]] = {"inference": [], "django": []}
    for _ in range(rounds):
        for name, step in (("inference", inference), ("django", request)):
            count, started = 0, time.process_time()
            while time.process_time() - started < seconds:
                step()
                count += 1
            milliseconds[name].append(1000 * (time.process_time() - started) / count)
    return {name: statistics.median(values) for name, values in milliseconds.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_load")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks for the throughput target")
    parser.add_argument(
        "--checkpoint", type=Path, default=SHIPPED_CHECKPOINT, help="the model to serve (DERMAI_CHECKPOINT)"
    )
    args = parser.parse_args(argv)
    data = lesion_jpeg((600, 450))
    reference = InProcess(data, args.checkpoint.resolve())
    env = {**UNTHROTTLED, "DERMAI_CHECKPOINT": str(reference.checkpoint)}
    with tempfile.TemporaryDirectory(prefix="dermai-http-load-") as temporary:  # the database and the log
        folder = Path(temporary)
        database = migrate(folder / "db.sqlite3")
        with gunicorn(PORT, database=database, env=env, log=folder / "gunicorn.log") as (server, _, cold_start):
            master = server.pid
            print(
                f"serving {args.checkpoint.name}; cold start: gunicorn launch → /readyz answering in {cold_start:.2f} s"
            )
            rows = [load(data, concurrency=c, seconds=args.seconds, master=master) for c in args.concurrency]
            peak = max(rows, key=lambda row: row["requests_per_s"])
            # The VM's speed drifts by ±20 % over minutes: the target's two rates are measured in
            # alternating blocks, and each block's HTTP rate is set against the reference next to it.
            rounds = []
            for _ in range(args.rounds):
                in_process = reference.rate(seconds=args.seconds / 3)
                http = load(data, concurrency=peak["concurrency"], seconds=args.seconds / 3, master=master)
                rounds.append({"in_process_images_per_s": in_process, "http_requests_per_s": http["requests_per_s"]})
            memory = [memory_mb(pid) for pid in worker_pids(master)]
            master_memory = memory_mb(master)
        web = web_stack_cost(reference, database=database)
    print(
        f"{'clients':>7} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6} {'client CPU':>10} "
        f"{'server CPU per request, user + system':>38}"
    )
    for row in rows:
        print(
            f"{row['concurrency']:7d} {row['requests_per_s']:7.1f} {row['median_ms']:8.1f} "
            f"{row['p95_ms']:8.1f} {row['p99_ms']:8.1f} {row['errors']:6d} {row['client_cpu_percent']:9.0f}% "
            f"{row['server_user_ms_per_request']:28.1f} + {row['server_system_ms_per_request']:.1f} ms"
        )
    print(f"throughput target, {peak['concurrency']} clients against one torch thread in process, alternating:")
    for index, row in enumerate(rounds, 1):
        row["share"] = row["http_requests_per_s"] / (2 * row["in_process_images_per_s"])
        print(
            f"  round {index}: {row['http_requests_per_s']:6.1f} req/s against 2 × "
            f"{row['in_process_images_per_s']:5.1f} images/s = {row['share']:.0%}"
        )
    share = statistics.median(row["share"] for row in rounds)
    print(f"median {share:.0%} of twice the in-process rate (target ≥ 80 %)")
    print(
        f"CPU per image in this process, taking turns: inference {web['inference']:.1f} ms, through Django's "
        f"test client {web['django']:.1f} ms (Django + DRF alone allow {web['inference'] / web['django']:.0%})"
    )
    for name in ("rss", "pss", "uss"):
        print(f"worker {name.upper()} (MB): " + ", ".join(f"{m[name]:.0f}" for m in memory))
    print(f"master RSS {master_memory['rss']:.0f} MB, PSS {master_memory['pss']:.0f} MB")
    path = save(
        "http_load" if reference.checkpoint == SHIPPED_CHECKPOINT.resolve() else f"http_load-{args.checkpoint.stem}",
        {
            "checkpoint": args.checkpoint.name,
            "workers": 2,
            "image": "600×450 JPEG",
            "cold_start_s": cold_start,
            "results": rows,
            "target_rounds": rounds,
            "peak_share_of_two_in_process": share,
            "in_process_cpu_ms_per_image": web,
            "worker_memory_mb": memory,
            "master_memory_mb": master_memory,
        },
    )
    print(f"wrote {path}")
    return {"rows": rows, "cold_start_s": cold_start, "share": share}


if __name__ == "__main__":
    main()
