"""gunicorn settings for `make run` and production: workers × torch threads ≤ CPU cores."""

import os

bind = os.environ.get("DERMAI_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", 2))
threads = 1
# Each worker runs inference on this many torch threads; together they fill the cores, no more.
os.environ.setdefault("DERMAI_TORCH_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
timeout = 30
graceful_timeout = 20
max_requests = 2000  # recycle workers now and then
max_requests_jitter = 200
accesslog = "-"
wsgi_app = "dermai_site.wsgi:application"


def post_worker_init(worker):
    """Load the model before the worker takes traffic, so /readyz answers truthfully from the start."""
    from classifier.services import predictor_get

    predictor_get()
