"""gunicorn from the repository's config and Debian's nginx with the shipped site, on loopback; the migrated
database and the collected static files they serve."""

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+) ")  # gunicorn's line once it has bound


def get(path: str, *, port: int, timeout: float = 30) -> tuple[int, bytes]:
    """GET ``path`` from the server on ``port``: its status and body (0 and no body when unreachable)."""
    try:
        connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""


def migrate(database: Path) -> Path:
    """Bring the SQLite file ``database`` to the latest migrations (~5 s: make one and copy it); returns it."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "dermai_site.settings", "DATABASE_URL": f"sqlite:///{database}"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    return database


def collect_static(root: Path) -> Path:
    """The site's static files collected into ``root``, as `make run` does: the manifest storage needs them.

    Serve them with ``DERMAI_STATIC_ROOT`` set to ``root``. Never the checkout's `staticfiles/`:
    collecting rewrites its files while other test processes' WhiteNoise may be reading them.
    """
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "dermai_site.settings", "DERMAI_STATIC_ROOT": str(root)}
    command = [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    return root


@contextmanager
def gunicorn(port: int = 0, *, database: Path, workers: int = 2, env: dict[str, str] | None = None, log: Path):
    """gunicorn from ``gunicorn.conf.py`` on loopback ``port``, serving the migrated SQLite file ``database``.

    Yields (the master's process, its port, seconds until /readyz answered). With ``port`` 0 the
    kernel picks a free port as gunicorn binds, read back from gunicorn's log: no other test process
    can take it in between, and the server polled is always this one. ``env`` is added to this
    process's environment; gunicorn's log (its stderr) goes to ``log`` and its tail into the error
    when the server never gets ready. On leaving, master and workers are killed at once: nothing
    measured or tested here is a graceful stop, which costs ~2 s (each process unloading torch).
    """
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dermai_site.settings",  # the site's, not the tests' (shared cache, real hasher)
        "DATABASE_URL": f"sqlite:///{database}",
        "DERMAI_BIND": f"{HOST}:{port}",
        "WEB_CONCURRENCY": str(workers),
        **(env or {}),
    }
    started = time.perf_counter()
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--access-logfile", "/dev/null"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group: master and workers stop together
        )
    try:
        bound = None  # gunicorn logs the address once it has bound it (after loading the site: preload_app)
        while bound is None or get("/readyz", port=bound, timeout=5)[0] != 200:
            if process.poll() is not None or time.perf_counter() - started > 90:
                raise RuntimeError(f"gunicorn did not become ready: {log.read_text(errors='replace')[-2000:]}")
            if bound is None and (listening := LISTENING.search(log.read_bytes())):
                bound = int(listening.group(1))
            time.sleep(0.1)
        yield process, bound, time.perf_counter() - started
    finally:
        with suppress(ProcessLookupError):  # a test may have stopped it already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


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
    """The pids of a gunicorn master's live workers."""
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []
