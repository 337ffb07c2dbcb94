"""A local HTTP file server for the download tests (127.0.0.1, proxies off).

``routes`` maps a request path to ``bytes`` or ``(mode, bytes)``; mode 'ok' serves the bytes,
'drop' promises the whole body, sends half and hangs up, 'wrong' sends as many wrong bytes.
Other paths answer 404. ``requests`` lists the paths asked for, in order.
"""
from __future__ import annotations

import http.server
import threading
from contextlib import contextmanager

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        mode, body = route if isinstance(route, tuple) else ("ok", route)
        if mode == "wrong":
            body = b"\x00" * len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def no_proxies(monkeypatch) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@contextmanager
def serving(monkeypatch):
    """The running server (``routes``, ``requests``, ``url(path)``) until the block ends."""
    no_proxies(monkeypatch)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests = {}, []
    httpd.url = lambda path="/": f"http://127.0.0.1:{httpd.server_address[1]}{path}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
