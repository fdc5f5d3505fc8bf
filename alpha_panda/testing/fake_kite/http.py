"""The fake's HTTP front: Kite's JSON envelope, form bodies, CSV instrument lists."""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

if TYPE_CHECKING:
    from alpha_panda.testing.fake_kite import FakeKite


def handler_for(fake: FakeKite) -> type[BaseHTTPRequestHandler]:
    from alpha_panda.testing.fake_kite import KiteError as fake_error

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep test output clean; the fake records requests itself

        def _serve(self, method: str) -> None:
            url = urlparse(self.path)
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                body = self.rfile.read(length).decode()
                params.update({k: v[0] for k, v in parse_qs(body).items()})
            if url.path == "/connect/login" and method == "GET":
                try:
                    page = fake.connect_login(params.get("api_key", ""))
                except fake_error as err:
                    return self._send(err.status, err.message.encode(), "text/plain")
                return self._send(200, f"{page}\n".encode(), "text/plain")
            if url.path.startswith("/instruments"):
                parts = url.path.strip("/").split("/")
                return self._send(200, fake.instruments_csv(parts[1] if len(parts) > 1 else None)
                                  .encode(), "text/csv")
            try:
                if method == "POST" and url.path.startswith("/orders/") \
                        and fake.place_register_delay_s:
                    time.sleep(fake.place_register_delay_s)  # not in the book until then
                data = fake.handle(method, url.path, params, self.headers.get("Authorization"))
                if method == "POST" and url.path.startswith("/orders/") and fake.place_delay_s:
                    time.sleep(fake.place_delay_s)  # placed, but the answer comes too late
                if method == "POST" and url.path.startswith("/orders/") \
                        and fake.bare_place_answers:
                    fake.bare_place_answers -= 1  # placed, but the answer is a bare 502
                    return self._send(502, b"", None)
                body_out = {"status": "success", "data": data}
                code = 200
            except fake_error as err:
                body_out = {"status": "error", "message": err.message, "data": None,
                            "error_type": err.error_type}
                code = err.status
            self._send(code, json.dumps(body_out).encode(), "application/json")

        def _send(self, code: int, body: bytes, ctype: str | None) -> None:
            try:
                self.send_response(code)
                if ctype is not None:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client timed out and left: nobody to answer

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler
