"""gunicorn from the repository's config and Debian's nginx with the shipped site, on loopback."""

import http.client
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def get(path: str, *, port: int, timeout: float = 30) -> tuple[int, bytes]:
    """GET ``path`` from the server on ``port``: its status and body (0 and no body when unreachable)."""
    try:
        connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""


@contextmanager
def gunicorn(port: int, *, workers: int = 2, env: dict[str, str] | None = None, log: Path | None = None):
    """gunicorn from ``gunicorn.conf.py`` on loopback ``port``; yields (master pid, seconds until /readyz).

    ``env`` is added to this process's environment (a ``DATABASE_URL`` is migrated first); gunicorn's
    own log (its stderr) goes to ``log``, or nowhere.
    """
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dermai_site.settings",  # the site's, not the tests' (shared cache, real hasher)
        "DERMAI_BIND": f"{HOST}:{port}",
        "WEB_CONCURRENCY": str(workers),
        **(env or {}),
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    started = time.perf_counter()
    with open(log or os.devnull, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--access-logfile", "/dev/null"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        while get("/readyz", port=port)[0] != 200:
            if process.poll() is not None or time.perf_counter() - started > 120:
                raise RuntimeError("gunicorn did not become ready")
            time.sleep(0.05)
        yield process.pid, time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGTERM)
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
