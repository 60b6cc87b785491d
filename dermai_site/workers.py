"""gunicorn's synchronous worker, answering an API request it must abandon in the API's JSON."""

from gunicorn import util
from gunicorn.workers import sync

from classifier.errors import is_api_request, json_error


class SyncWorker(sync.SyncWorker):
    """gunicorn's sync worker; a request under ``/api/`` that outlasts ``timeout`` gets a JSON 500.

    gunicorn aborts a worker whose request outlasts its ``timeout`` (SIGABRT, which raises
    ``SystemExit`` inside the request) and answers that request with its own HTML 500 page. Under
    ``/api/`` this answers with the API's envelope instead, code ``server_error``; every other error
    is gunicorn's own. nginx passes the answer on and does not retry it (deploy/nginx/dermai.conf).
    """

    def handle_error(self, req, client, addr, exc):
        if not (isinstance(exc, SystemExit) and req is not None and is_api_request(req)):
            return super().handle_error(req, client, addr, exc)
        self.log.error(
            "worker %s aborted during %s %s (timeout): answered 500 server_error", self.pid, req.method, req.path
        )
        response = json_error("server_error")
        body = response.content
        head = (
            f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except OSError:
            self.log.debug("could not send the JSON 500 to the client")
