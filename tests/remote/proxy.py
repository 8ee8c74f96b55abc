"""A small HTTP proxy in front of the real registry, for tests: bearer-token auth and dropped connections.

``bearer=True``: every /v2/ request needs ``Authorization: Bearer <token>``; the proxy answers 401
with a ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` challenge and serves tokens at
/token to ``alice:s3cret``. ``drop_blobs=N``: the first N blob GETs send their headers and half the
body, then the connection is closed. ``tamper_manifests``: manifest GETs get a space appended (the
Docker-Content-Digest header still names the original). ``requests`` records (method, path).
``drop_uploads=N`` (set after start): the first N blob-upload PUTs are read, then the connection
is closed unanswered. ``redirect_blobs`` (set after start): blob GETs answer 307 to the registry
itself, which is another host.
"""

from __future__ import annotations

import base64
import http.client
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Proxy:
    def __init__(
        self, upstream: str, *, bearer: bool = False, drop_blobs: int = 0, tamper_manifests: bool = False
    ) -> None:
        self.upstream = upstream
        self.tamper_manifests = tamper_manifests
        self.redirect_blobs = False
        self.drop_uploads = 0
        self.requests: list[tuple[str, str]] = []
        self.bearer = bearer
        self.drop_blobs = drop_blobs
        self.dropped = 0
        self.token_requests: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _token(self) -> None:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                proxy.token_requests.append(query)
                expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
                if self.headers.get("Authorization") != expected:
                    self._send(401, b'{"details":"bad credentials"}')
                    return
                token = "tok." + base64.urlsafe_b64encode(query.get("scope", "").encode()).decode()
                self._send(200, f'{{"token":"{token}","expires_in":300}}'.encode())

            def _allowed(self) -> bool:
                path = urllib.parse.urlsplit(self.path).path
                parts = path.split("/")
                if path == "/v2/" or len(parts) < 4:
                    need = ""
                else:
                    end = next(i for i, p in enumerate(parts) if p in ("manifests", "blobs", "tags"))
                    repo = "/".join(parts[2:end])
                    actions = "pull" if self.command in ("GET", "HEAD") else "pull,push"
                    need = f"repository:{repo}:{actions}"
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Bearer tok."):
                    granted = base64.urlsafe_b64decode(auth.removeprefix("Bearer tok.")).decode()
                    if not need or any(
                        s.startswith(need.rsplit(":", 1)[0] + ":")
                        and set(need.rsplit(":", 1)[1].split(",")) <= set(s.rsplit(":", 1)[1].split(","))
                        for s in granted.split(" ")
                    ):
                        return True
                realm = f"http://{proxy.host}/token"
                scope = f',scope="{need}"' if need else ""
                self._send(
                    401,
                    b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                    {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake-registry"{scope}'},
                )
                return False

            def _forward(self) -> None:
                with proxy.lock:
                    proxy.requests.append((self.command, self.path))
                if self.path.startswith("/token"):
                    self._token()
                    return
                if proxy.bearer and not self._allowed():
                    return
                if proxy.redirect_blobs and self.command == "GET" and "/blobs/sha" in self.path:
                    self._send(307, b"", {"Location": f"http://{proxy.upstream}{self.path}"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "PUT" and "/blobs/uploads/" in self.path:
                    with proxy.lock:
                        drop_upload = proxy.drop_uploads > 0
                        proxy.drop_uploads -= drop_upload
                    if drop_upload:  # read the upload, then hang up without an answer
                        self.close_connection = True
                        return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                drop = False
                if proxy.tamper_manifests and "/manifests/" in self.path and self.command == "GET":
                    data += b" "
                if self.command == "GET" and "/blobs/" in self.path and resp.status == 200:
                    with proxy.lock:
                        if proxy.dropped < proxy.drop_blobs:
                            proxy.dropped += 1
                            drop = True
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                # a HEAD answer names the size of what a GET would send
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if drop:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        return Handler
