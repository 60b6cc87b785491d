"""Soak: 8 clients for 60 s mixing good and bad uploads, a worker killed half-way (loopback only)."""

import argparse
import itertools
import os
import signal
import threading
import time

from benchmarks.common import gunicorn, lesion_jpeg, post_image, rss_mb, save, worker_pids

UPLOADS = [
    (lesion_jpeg((600, 450)), "good.jpg", 200),
    (b"not an image", "bad.jpg", 415),
    (lesion_jpeg((600, 450))[:3000], "truncated.jpg", 400),
    (lesion_jpeg((1200, 900)), "good-large.jpg", 200),
]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)
    statuses: dict[int, int] = {}
    unexpected = 0
    lock = threading.Lock()
    with gunicorn(workers=2) as (master, _):
        deadline = time.perf_counter() + args.seconds

        def client(offset: int) -> None:
            nonlocal unexpected
            for data, name, expected in itertools.islice(itertools.cycle(UPLOADS), offset, None):
                if time.perf_counter() >= deadline:
                    return
                status = post_image(data, name)
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    unexpected += status not in (expected, 0)

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
        for thread in threads:
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
