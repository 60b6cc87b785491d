"""HTTP throughput and latency of gunicorn (the repository's config) on loopback, and its cold start."""

import argparse
import threading
import time

from benchmarks.common import (
    gunicorn,
    lesion_jpeg,
    memory_mb,
    post_image,
    save,
    server_cpu_seconds,
    summary,
    worker_pids,
)


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


def in_process_rate(data: bytes, *, seconds: float) -> float:
    """Images per second through our inference path in this process on one torch thread: the
    reference for the throughput target (2 workers ≥ 80 % of twice this rate), with the workers'
    allocator settings."""
    import torch

    from dermai_site.memory import keep_freed_memory
    from ml import SHIPPED_CHECKPOINT
    from ml.predict import Predictor

    keep_freed_memory()
    torch.set_num_threads(1)
    predictor = Predictor(SHIPPED_CHECKPOINT)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        predictor.probabilities(predictor.prepare(data, guard=True).unsqueeze(0))
        count += 1
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_load")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args(argv)
    data = lesion_jpeg((600, 450))
    reference = in_process_rate(data, seconds=args.seconds)
    print(f"in process, one torch thread: {reference:.1f} images/s")
    with gunicorn(workers=2) as (master, cold_start):
        print(f"cold start: gunicorn launch → /readyz answering in {cold_start:.2f} s")
        rows = [load(data, concurrency=c, seconds=args.seconds, master=master) for c in args.concurrency]
        memory = [memory_mb(pid) for pid in worker_pids(master)]
        master_memory = memory_mb(master)
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
    peak = max(row["requests_per_s"] for row in rows)
    print(f"peak {peak:.1f} req/s = {peak / (2 * reference):.0%} of 2 × the in-process rate (target ≥ 80 %)")
    for name in ("rss", "pss", "uss"):
        print(f"worker {name.upper()} (MB): " + ", ".join(f"{m[name]:.0f}" for m in memory))
    print(f"master RSS {master_memory['rss']:.0f} MB, PSS {master_memory['pss']:.0f} MB")
    path = save(
        "http_load",
        {
            "workers": 2,
            "image": "600×450 JPEG",
            "cold_start_s": cold_start,
            "in_process_images_per_s": reference,
            "peak_share_of_two_in_process": peak / (2 * reference),
            "results": rows,
            "worker_memory_mb": memory,
            "master_memory_mb": master_memory,
        },
    )
    print(f"wrote {path}")
    return {"rows": rows, "cold_start_s": cold_start}


if __name__ == "__main__":
    main()
