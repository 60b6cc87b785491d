"""gunicorn settings for `make run` and production: workers × torch threads ≤ CPU cores."""

import os

bind = os.environ.get("DERMAI_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", 2))
threads = 1
# gunicorn's sync worker, except that a request under /api/ it aborts at `timeout` gets the API's JSON 500.
worker_class = "dermai_site.workers.SyncWorker"
# Each worker runs inference on this many torch threads; together they fill the cores, no more.
os.environ.setdefault("DERMAI_TORCH_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
timeout = 30
graceful_timeout = 20
# No recycling after N requests: a flood of cheap 429 answers would restart the workers every few
# seconds. Memory is bounded instead, per request (ml.preprocessing's decoding limits).
max_requests = 0
# Instead, a worker whose resident memory has grown past this ceiling (MB) finishes its request and
# is replaced: a safety net for a slow leak, above a worker's working set (~470 MB under the soak; docs/benchmarks.md).
# 0 turns it off.
max_worker_rss_mb = int(os.environ.get("DERMAI_WORKER_MAX_RSS_MB", 600))
accesslog = "-"
# The control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl): a second instance on
# the same host would take it over from the first. DermAI needs no runtime control interface.
control_socket_disable = True
wsgi_app = "dermai_site.wsgi:application"
# Import Django and torch once in the master; the workers fork from it and share those pages
# (torch alone is ~500 MB resident). No tensor work runs before the fork: each worker sets its
# thread count and loads the model itself (post_worker_init), so no thread pool crosses a fork.
preload_app = True


def post_worker_init(worker):
    """Load the model before the worker takes traffic, so /readyz answers truthfully from the start.

    A checkpoint that cannot be loaded stops the whole server with one clear line, rather than
    workers that boot, fail and boot again.
    """
    import sys

    from classifier.errors import PredictionError
    from classifier.lifecycle import predictor_get

    try:
        predictor_get()
    except PredictionError:
        worker.log.error(
            "DermAI cannot start: the model checkpoint %s cannot be loaded",
            os.environ.get("DERMAI_CHECKPOINT", "ml/weights (the shipped one)"),
        )
        sys.exit(3)  # gunicorn's "worker failed to boot": the master stops instead of respawning


def post_fork(server, worker):
    """Keep freed buffers in each worker's heap: no page faults per request for image buffers."""
    from dermai_site.memory import keep_freed_memory

    keep_freed_memory()


def post_request(worker, req, environ, resp):
    """Replace a worker whose memory passed ``DERMAI_WORKER_MAX_RSS_MB``, once its answer is sent.

    Near the ceiling the worker first returns its free heap to the kernel; only memory it still
    holds after that counts against it (``dermai_site.memory.over_ceiling``).
    """
    from dermai_site.memory import over_ceiling

    rss = over_ceiling(max_worker_rss_mb) if max_worker_rss_mb else None
    if rss is not None:
        worker.log.warning("worker %s holds %.0f MB > %d MB: replacing it", worker.pid, rss, max_worker_rss_mb)
        worker.alive = False  # the sync worker leaves its loop; the master forks a fresh one
