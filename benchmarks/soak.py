"""Soak: eight hostile clients through nginx, and a ninth, ordinary client whose predictions are timed.

gunicorn from ``gunicorn.conf.py`` (two workers) behind ``deploy/nginx/dermai.conf``, on loopback,
for ``--seconds`` (120 by default). The hostile clients send files that stay inside every size limit
yet would hold a worker for seconds or hundreds of megabytes if decoded, batches of twenty of them,
stalled uploads and admin logins under a fresh user name each time. Measured: the ordinary client's
latency (p50, p90, max), every answer's status and error code against what the API documents for
it, worker RSS each second against the 600 MB ceiling, 5xx answers, worker timeouts (from
gunicorn's log) and ``/healthz`` latency. ``--kill-worker`` also kills a worker half-way: the
uploads in flight on it are lost by design (nginx does not send a POST twice).
"""

import argparse
import json
import math
import os
import re
import signal
import socket
import statistics
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

from benchmarks.common import PORT, UNTHROTTLED, lesion_jpeg, multipart, request, rss_mb, save
from tests.support.hostile import (
    LESION,
    flat_webp,
    jpeg_with,
    png_in_chunks,
    progressive_jpeg,
    scan_bomb,
    zero_png,
)
from tests.support.servers import HOST, collect_static, gunicorn, migrate, nginx, worker_pids

PROXY_PORT = PORT + 1
# The ordinary client and the /healthz probe come from an address of their own (all of 127/8 is
# loopback): nginx and the site see them apart from the attackers.
ORDINARY = "127.0.0.2"
# The targets (docs/benchmarks.md): gunicorn.conf.py's RSS ceiling, seconds per answer.
RSS_CEILING_MB = 600
SINGLE_S, BATCH_S, ORDINARY_P90_S = 1.5, 5.0, 1.0
BATCH_FILES = 20
WORKERS = 2


@dataclass(frozen=True)
class Upload:
    """A prepared POST and what the API documents for it: its statuses and error codes (a batch's
    per-file codes; ``ok`` for a classified file)."""

    name: str
    path: str
    body: bytes
    content_type: str
    statuses: frozenset[int]
    codes: frozenset[str]

    @classmethod
    def of(cls, name: str, files: list[tuple[str, bytes]], statuses: set[int], codes: set[str]) -> "Upload":
        path = "/api/v1/predictions/batch/" if len(files) > 1 else "/api/v1/predictions/"
        body, content_type = multipart(files, field="images" if len(files) > 1 else "image")
        return cls(name, path, body, content_type, frozenset(statuses), frozenset(codes))


def hostile_uploads() -> tuple[list[Upload], list[Upload]]:
    """The hostile single uploads and batches (a few seconds to build)."""
    lesion = LESION.read_bytes()
    progressive = progressive_jpeg((7071, 7071), scans=64)
    webp = flat_webp((4096, 4096))
    singles = [
        ("jpeg, 11 MB of 0xFF padding", jpeg_with(lesion, b"\xff" * 11_000_000), "too_complex"),
        ("jpeg, 2.9 M empty comments", jpeg_with(lesion, b"\xff\xfe\x00\x02" * 2_900_000), "too_complex"),
        ("png, 900 k tiny chunks", png_in_chunks(900_000, side=547), "too_complex"),
        (f"jpeg, 7071² progressive, 64 scans ({len(progressive) // 1000} kB)", progressive, "too_complex"),
        (f"webp, 4096² lossless ({len(webp)} B)", webp, "too_many_pixels"),
        ("jpeg, 2,010 scans of 96×72", scan_bomb(), "too_complex"),
        ("png, 7000² of zeros", zero_png(), "too_many_pixels"),
    ]
    batches = [
        (f"batch of {BATCH_FILES} × the 7071² jpeg", progressive, "too_complex"),
        (f"batch of {BATCH_FILES} × the 4096² webp", webp, "too_many_pixels"),
    ]
    return (
        [Upload.of(name, [("hostile.jpg", data)], {422}, {code}) for name, data, code in singles],
        [
            Upload.of(name, [(f"{i}.jpg", data) for i in range(BATCH_FILES)], {200}, {code})
            for name, data, code in batches
        ],
    )


@dataclass
class Tally:
    """The answers to one kind of request."""

    expected: frozenset[int]
    statuses: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)
    unexpected: Counter = field(default_factory=Counter)
    json_500: int = 0  # the API's own 500 server_error, as a worker past its timeout answers


class Recorder:
    """Every answer of the run, by kind of request; shared by the clients' threads."""

    def __init__(self, tolerated: set[int]) -> None:
        self.tallies: dict[str, Tally] = {}
        self.tolerated = tolerated  # statuses not counted as unexpected (a killed worker's)
        self.stalled = 0  # uploads announced and never finished
        self.lock = threading.Lock()

    def add(self, name: str, expected: frozenset[int], status: int, seconds: float, codes: list[str]) -> None:
        with self.lock:
            tally = self.tallies.setdefault(name, Tally(expected))
            tally.statuses[status] += 1
            tally.codes.update(codes)
            tally.seconds.append(seconds)
            if status not in expected | self.tolerated:
                tally.unexpected[status] += 1
            tally.json_500 += status == 500 and codes == ["server_error"]


def codes_of(status: int, body: bytes) -> list[str]:
    """The error codes of an API answer: one for a refusal, one per file for a batch (``ok``: classified)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return ["(no answer)" if status == 0 else "(not JSON)"]
    if "results" in answer:
        return [(item.get("error") or {}).get("code", "ok") for item in answer["results"]]
    return [(answer.get("error") or {}).get("code", "ok")]


def timed(method: str, path: str, body: bytes | None = None, headers: dict | None = None, *, source: str = HOST):
    """One request through nginx: status, body, headers and the seconds it took."""
    started = time.perf_counter()
    status, answer, header = request(method, path, body, headers, port=PROXY_PORT, source=source)
    return status, answer, header, time.perf_counter() - started


def post(recorder: Recorder, upload: Upload, *, source: str = HOST) -> None:
    status, body, _, seconds = timed(
        "POST", upload.path, upload.body, {"Content-Type": upload.content_type}, source=source
    )
    recorder.add(upload.name, upload.statuses, status, seconds, codes_of(status, body))


def uploader(recorder: Recorder, uploads: list[Upload], offset: int, deadline: float) -> None:
    """A hostile client: the uploads in turn, from ``offset``, back to back."""
    turn = offset
    while time.perf_counter() < deadline:
        post(recorder, uploads[turn % len(uploads)])
        turn += 1


def staller(recorder: Recorder, deadline: float) -> None:
    """A hostile client that keeps four uploads announced and stalled, ten seconds at a time."""
    while time.perf_counter() < deadline:
        connections = []
        for _ in range(4):
            try:
                connection = socket.create_connection((HOST, PROXY_PORT))
                connection.sendall(
                    b"POST /api/v1/predictions/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 500000\r\n"
                    b"Content-Type: multipart/form-data; boundary=x\r\n\r\n--x\r\n" + b"a" * 10_000
                )
            except OSError:  # nginx busy: try again next round
                continue
            connections.append(connection)
        time.sleep(min(10, max(0, deadline - time.perf_counter())))
        for connection in connections:
            connection.close()
        with recorder.lock:
            recorder.stalled += len(connections)


def admin_guesser(recorder: Recorder, deadline: float, *, per_second: float = 4) -> None:
    """A hostile client guessing admin passwords under a fresh user name each attempt (django-axes
    locks a name out, never a new one), with the login form's CSRF token, ``per_second`` at most."""
    attempt = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        status, page, headers, seconds = timed("GET", "/admin/login/")
        cookie = SimpleCookie()
        for line in headers.get_all("Set-Cookie") or []:
            cookie.load(line)
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        ready = bool(token) and "csrftoken" in cookie
        recorder.add("admin login form", frozenset({200}), status, seconds, [] if ready else ["(no CSRF token)"])
        if status == 200 and ready:
            attempt += 1
            form = {
                "username": f"soak-{os.getpid()}-{attempt}",
                "password": "not-the-password",
                "csrfmiddlewaretoken": token.group(1).decode(),
                "next": "/admin/",
            }
            status, _, _, seconds = timed(
                "POST",
                "/admin/login/?next=/admin/",
                urllib.parse.urlencode(form).encode(),
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Cookie": f"csrftoken={cookie['csrftoken'].value}",
                },
            )
            # 200: the form again, "wrong password"; 429: the address's attempts are over the limit.
            recorder.add("admin login, fresh user name", frozenset({200, 429}), status, seconds, [])
        time.sleep(max(0, 1 / per_second - (time.perf_counter() - started)))


def ordinary(recorder: Recorder, upload: Upload, deadline: float) -> None:
    """The ninth client: an ordinary 600×450 lesion photo, again and again, from its own address."""
    while time.perf_counter() < deadline:
        post(recorder, upload, source=ORDINARY)


def health_prober(recorder: Recorder, deadline: float) -> None:
    """``/healthz`` once a second, from the ordinary client's address."""
    tick = time.perf_counter()
    while tick < deadline:
        status, _, _, seconds = timed("GET", "/healthz", source=ORDINARY)
        recorder.add("/healthz", frozenset({200}), status, seconds, [])
        tick += 1
        time.sleep(max(0, tick - time.perf_counter()))


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q ≤ 1) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def gunicorn_log_counts(log: Path) -> dict[str, int]:
    text = log.read_text(errors="replace")
    return {
        "worker_timeouts": text.count("WORKER TIMEOUT"),
        "timeouts_answered_in_json": text.count("(timeout): answered 500 server_error"),
        "workers_over_the_rss_ceiling": len(re.findall(r"MB > \d+ MB: replacing it", text)),
    }


def counts(counter: Counter) -> str:
    return " ".join(f"{n}×{key}" for key, n in counter.most_common()) or "-"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument(
        "--kill-worker",
        action="store_true",
        help="kill a worker with SIGKILL half-way (its uploads in flight are lost: not counted as unexpected)",
    )
    args = parser.parse_args(argv)
    print("building the hostile files …", flush=True)
    singles, batches = hostile_uploads()
    normal = Upload.of("ordinary 600×450 lesion jpeg", [("lesion.jpg", lesion_jpeg((600, 450)))], {200}, {"ok"})
    # With --kill-worker, what was in flight on the killed worker: no answer or nginx's 503.
    recorder = Recorder(tolerated={0, 502, 503} if args.kill_worker else set())
    folder = Path(tempfile.mkdtemp(prefix="dermai-soak-"))
    log = folder / "gunicorn.log"
    env = {
        **UNTHROTTLED,  # all attackers share one address: the throttle would answer them 429 at once
        "DERMAI_NUM_PROXIES": "1",  # behind nginx: the throttle, axes and the login limit see the client
    }
    rss: list[float] = []  # the largest worker's RSS, each second
    pids_seen: set[int] = set()
    killed, replaced = None, False
    database = migrate(folder / "db.sqlite3")  # the login attempts' rows stay out of var/
    env["DERMAI_STATIC_ROOT"] = str(collect_static(folder / "staticfiles"))  # the admin's login page
    launched = gunicorn(PORT, database=database, workers=WORKERS, env=env, log=log)
    with launched as (server, _, _), nginx(f"{HOST}:{PORT}", PROXY_PORT, folder):
        print(f"{args.seconds:.0f} s: 8 hostile clients and an ordinary one through nginx …", flush=True)
        started = time.perf_counter()
        deadline = started + args.seconds
        clients = [
            *(threading.Thread(target=uploader, args=(recorder, singles, i, deadline)) for i in range(5)),
            threading.Thread(target=uploader, args=(recorder, batches, 0, deadline)),
            threading.Thread(target=staller, args=(recorder, deadline)),
            threading.Thread(target=admin_guesser, args=(recorder, deadline)),
            threading.Thread(target=ordinary, args=(recorder, normal, deadline)),
            threading.Thread(target=health_prober, args=(recorder, deadline)),
        ]
        for client in clients:
            client.start()
        tick = started
        while any(client.is_alive() for client in clients):
            tick += 1
            time.sleep(max(0, tick - time.perf_counter()))
            pids = worker_pids(server.pid)
            pids_seen.update(pids)
            sizes = []
            for pid in pids:
                try:
                    sizes.append(rss_mb(pid))
                except (FileNotFoundError, ProcessLookupError):  # replaced since the listing
                    continue
            rss.append(max(sizes, default=0))
            if args.kill_worker and killed is None and time.perf_counter() > started + args.seconds / 2 and pids:
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)  # gunicorn must replace it
            elif killed is not None and killed not in pids and len(pids) == WORKERS:
                replaced = True
        for client in clients:
            client.join()
    server = {
        "worker_rss_mb_each_second": [round(value) for value in rss],
        "worker_rss_max_mb": round(max(rss, default=0)),
        "seconds_over_rss_ceiling": sum(1 for value in rss if value > RSS_CEILING_MB),
        "worker_processes_seen": len(pids_seen),
        **gunicorn_log_counts(log),
        "gunicorn_log": str(log),
    }
    if args.kill_worker:
        server |= {"killed_worker": killed, "killed_worker_replaced": replaced}
    return report(args, recorder, singles + batches, normal, server)


def report(args: argparse.Namespace, recorder: Recorder, hostile: list[Upload], normal: Upload, server: dict) -> dict:
    """Print the table and the verdicts; save and return them."""
    tallies = recorder.tallies
    print(f"\n{'request':<44} {'n':>5} {'max s':>6} {'target':>6}  statuses · answers")
    order = [u.name for u in hostile] + [
        "admin login form",
        "admin login, fresh user name",
        normal.name,
        "/healthz",
    ]
    targets = {u.name: BATCH_S if "batch" in u.path else SINGLE_S for u in hostile}
    for name in order:
        tally = tallies.get(name)
        if tally is None:
            print(f"{name:<44} {0:>5}")
            continue
        target = f"{targets[name]:.1f}" if name in targets else ""
        slowest = max(tally.seconds)
        flag = " !" if name in targets and slowest > targets[name] else ""
        line = f"{name:<44} {len(tally.seconds):>5} {slowest:>6.2f} {target:>6}{flag:2} {counts(tally.statuses)}"
        if tally.codes:
            line += f" · {counts(tally.codes)}"
        if tally.unexpected:
            line += f"  UNEXPECTED: {counts(tally.unexpected)}"
        print(line)
    print(f"{'stalled uploads (4 held at a time, 10 s each)':<44} {recorder.stalled:>5}")
    # Every file's answer against the codes the API documents for it.
    wrong_codes = {
        u.name: counts(Counter({c: n for c, n in tallies[u.name].codes.items() if c not in u.codes}))
        for u in hostile
        if u.name in tallies and set(tallies[u.name].codes) - u.codes - {"(no answer)"}
    }
    everything = [s for tally in tallies.values() for s in tally.statuses.elements()]
    server_errors = sum(1 for status in everything if status >= 500)
    lost = sum(1 for status in everything if status == 0)
    unexpected = sum(sum(tally.unexpected.values()) for tally in tallies.values())
    json_500 = sum(tally.json_500 for tally in tallies.values())
    mine = tallies.get(normal.name)
    health = tallies.get("/healthz")
    result = {
        "seconds": args.seconds,
        "kill_worker": args.kill_worker,
        "requests": {
            name: {
                "n": len(t.seconds),
                "statuses": dict(t.statuses),
                "codes": dict(t.codes),
                "max_s": max(t.seconds),
                "unexpected": dict(t.unexpected),
            }
            for name, t in tallies.items()
        },
        "ordinary": {
            "n": len(mine.seconds),
            "p50_s": percentile(mine.seconds, 0.5),
            "p90_s": percentile(mine.seconds, 0.9),
            "max_s": max(mine.seconds),
            "not_200": sum(n for status, n in mine.statuses.items() if status != 200),
        }
        if mine
        else None,
        "healthz": {"n": len(health.seconds), "p50_s": statistics.median(health.seconds), "max_s": max(health.seconds)}
        if health
        else None,
        "stalled_uploads": recorder.stalled,
        **server,
        "server_errors": server_errors,
        "json_500_answers": json_500,
        "connection_errors": lost,
        "unexpected_statuses": unexpected,
        "unexpected_codes": wrong_codes,
    }
    print()
    if mine:
        o = result["ordinary"]
        verdict = "met" if o["p90_s"] <= ORDINARY_P90_S and not o["not_200"] else "NOT met"
        print(
            f"ordinary client: {o['n']} predictions, p50 {o['p50_s']:.2f} s, p90 {o['p90_s']:.2f} s, "
            f"max {o['max_s']:.2f} s, {o['not_200']} not 200 (target p90 ≤ {ORDINARY_P90_S:.0f} s: {verdict})"
        )
    if health:
        h = result["healthz"]
        print(f"/healthz each second: p50 {h['p50_s']:.3f} s, max {h['max_s']:.2f} s")
    print(
        f"worker RSS each second: max {result['worker_rss_max_mb']} MB, {result['seconds_over_rss_ceiling']} s over "
        f"the {RSS_CEILING_MB} MB ceiling; workers replaced over it: {result['workers_over_the_rss_ceiling']}; "
        f"worker processes seen: {result['worker_processes_seen']}"
    )
    print(
        f"5xx: {server_errors} (JSON 500: {json_500}); worker timeouts in gunicorn's log: "
        f"{result['worker_timeouts']} ({result['gunicorn_log']}); connection errors: {lost}"
    )
    print(f"unexpected statuses: {unexpected}; unexpected codes: {wrong_codes or 'none'}")
    slow = [name for name, seconds in targets.items() if name in tallies and max(tallies[name].seconds) > seconds]
    verdicts = {
        f"every hostile upload answered in ≤ {SINGLE_S} s, every batch in ≤ {BATCH_S:.0f} s": not slow,
        f"worker RSS ≤ {RSS_CEILING_MB} MB each second": not result["seconds_over_rss_ceiling"],
        "no 5xx": not server_errors,
        "no worker timeout": not result["worker_timeouts"],
        f"ordinary p90 ≤ {ORDINARY_P90_S:.0f} s": bool(mine) and result["ordinary"]["p90_s"] <= ORDINARY_P90_S,
        "every answer as documented": not unexpected and not wrong_codes,
    }
    result["targets_met"] = verdicts
    print("targets: " + "; ".join(f"{goal}: {'met' if met else 'NOT met'}" for goal, met in verdicts.items()))
    if args.kill_worker:
        print(
            f"worker {server['killed_worker']} killed half-way, replaced by gunicorn: "
            f"{server['killed_worker_replaced']}; the 5xx and connection errors include the uploads in flight "
            "on it (nginx does not send a POST twice)"
        )
    path = save("soak", result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
