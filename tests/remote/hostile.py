"""A registry that misbehaves on purpose: a small raw-socket server (stdlib only) for the hostile tests.

It serves one small image, ``app:v1`` (an uncompressed layer with one file, a valid config, an OCI
manifest), and breaks one thing according to ``mode``:

- HTTP: ``garbage-status`` (a status line that is not HTTP), ``many-headers`` (200 headers),
  ``long-header`` (a 70 KiB header line), ``bad-chunked`` (broken chunked encoding),
  ``bad-content-length`` (``Content-Length: lots``), ``content-length-lie`` (the blob's length is
  promised, half is sent, the connection closes), ``trickle`` (the manifest's body, a byte at a
  time), ``trickle-headers`` (the headers, a byte at a time), ``silent`` (accepts, never answers);
- JSON: ``deep-json`` (a manifest 300000 ``[`` deep), ``huge-manifest`` (5 MiB),
  ``config-not-json``, ``unknown-layer-type``, ``unknown-config-type``, ``diff-ids-mismatch``,
  ``bad-digest`` (the layer's bytes do not match its digest), ``blob-too-long`` (more bytes than the
  descriptor's size, chunked), ``manifest-digest-lie`` (Docker-Content-Digest names other bytes);
- redirects: ``redirect-ftp`` (blobs redirect to ftp://), ``redirect-loop`` (to themselves, forever),
  ``redirect-foreign`` (blobs redirect to ``other``, another server on localhost, which serves them
  and records the headers it got: credentials must not be among them);
- auth: ``basic-loop`` (401 whatever is sent), ``bearer-loop`` (a token is issued, then refused),
  ``bad-token`` (the token endpoint answers JSON nested 300000 deep), ``error-escapes`` (a 404 whose
  error message carries newlines and terminal escapes).

``requests`` records (method, path, headers) of every request; ``need_auth`` makes every /v2/
request need ``Authorization: Basic`` of alice:s3cret (as in ``redirect-foreign``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socketserver
import tarfile
import threading
import time
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
BASIC = "Basic " + base64.b64encode(b"alice:s3cret").decode()

MODES = (
    "garbage-status",
    "many-headers",
    "long-header",
    "bad-chunked",
    "bad-content-length",
    "content-length-lie",
    "trickle",
    "trickle-headers",
    "silent",
    "deep-json",
    "huge-manifest",
    "config-not-json",
    "unknown-layer-type",
    "unknown-config-type",
    "diff-ids-mismatch",
    "bad-digest",
    "blob-too-long",
    "manifest-digest-lie",
    "redirect-ftp",
    "redirect-loop",
    "basic-loop",
    "bearer-loop",
    "bad-token",
    "error-escapes",
)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        data = b"hello from a hostile registry\n"
        info.size = len(data)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Image:
    """The image a mode serves: blobs by digest, and the manifest's bytes."""

    def __init__(self, mode: str) -> None:
        layer = _layer()
        diff_ids = [_digest(layer)] * (2 if mode == "diff-ids-mismatch" else 1)
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        ).encode()
        if mode == "config-not-json":
            config = b"this is not JSON {"
        layer_digest = _digest(layer)
        if mode == "bad-digest":
            layer = layer[:-1] + bytes([layer[-1] ^ 1])  # same size, other bytes
        self.blobs = {_digest(config): config, layer_digest: layer}
        self.layer_digest = layer_digest
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/x-not-a-config" if mode == "unknown-config-type" else OCI_CONFIG,
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/x-foo" if mode == "unknown-layer-type" else OCI_LAYER,
                    "digest": layer_digest,
                    "size": len(_layer()),
                }
            ],
        }
        if mode == "huge-manifest":
            manifest["annotations"] = {"padding": "x" * (5 << 20)}
        self.manifest = json.dumps(manifest).encode()
        if mode == "deep-json":
            self.manifest = b"[" * 300000 + b"]" * 300000


class HostileRegistry:
    def __init__(self, mode: str, *, need_auth: bool = False, other: HostileRegistry | None = None) -> None:
        if mode not in (*MODES, "redirect-foreign", "serve-blobs"):
            raise ValueError(mode)
        self.mode = mode
        self.need_auth = need_auth
        self.other = other
        self.image = Image(mode)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        registry = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    while registry._serve_one(self.rfile, self.wfile):
                        pass
                except (OSError, ValueError):
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HostileRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- one request ---------------------------------------------------------------------------
    def _serve_one(self, rfile: Any, wfile: Any) -> bool:
        line = rfile.readline(65536)
        if not line:
            return False
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            h = rfile.readline(65536)
            if h in (b"\r\n", b"\n", b""):
                break
            key, _, value = h.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if length:
            rfile.read(length)
        with self.lock:
            self.requests.append((method, path, headers))
        return self._answer(method, path.split("?")[0], headers, wfile)

    def _send(
        self,
        wfile: Any,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> bool:
        out = [f"HTTP/1.1 {status} X".encode()]
        all_headers = {"Content-Length": str(len(body)), **(headers or {})}
        out += [f"{k}: {v}".encode() for k, v in all_headers.items()]
        wfile.write(b"\r\n".join(out) + b"\r\n\r\n" + (b"" if head else body))
        wfile.flush()
        return True

    def _answer(self, method: str, path: str, headers: dict[str, str], wfile: Any) -> bool:
        mode, image = self.mode, self.image
        head = method == "HEAD"
        if mode == "serve-blobs":  # the other host of redirect-foreign
            digest = path.rsplit("/", 1)[-1]
            return self._send(wfile, 200, image.blobs.get(digest, b""), head=head)
        if path.startswith("/token"):
            if mode == "bad-token":
                return self._send(wfile, 200, b"[" * 300000, {"Content-Type": "application/json"})
            return self._send(wfile, 200, b'{"token": "t0ken"}', {"Content-Type": "application/json"})
        if mode == "garbage-status":
            wfile.write(b"HELLO \x00\x1b[31m NOT HTTP\r\n\r\n")
            wfile.flush()
            return False
        if mode == "silent":
            time.sleep(3600)
        if mode == "many-headers":
            return self._send(wfile, 200, b"{}", {f"X-Many-{i}": "1" for i in range(200)})
        if mode == "long-header":
            return self._send(wfile, 200, b"{}", {"X-Long": "a" * (70 << 10)})
        if mode == "bad-content-length":
            wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n{}")
            wfile.flush()
            return False
        if mode == "trickle-headers":
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10000:
                wfile.write(bytes([byte]))
                wfile.flush()
                time.sleep(0.2)
            return False
        if mode == "basic-loop" or (self.need_auth and headers.get("authorization") != BASIC):
            return self._send(wfile, 401, b"", {"WWW-Authenticate": 'Basic realm="hostile"'})
        if mode in ("bearer-loop", "bad-token"):
            challenge = f'Bearer realm="http://{self.host}/token",service="hostile"'
            return self._send(wfile, 401, b"", {"WWW-Authenticate": challenge})
        if path == "/v2/" or path == "/v2":
            return self._send(wfile, 200, b"{}")
        if "/manifests/" in path:
            return self._manifest(path, wfile, head)
        if "/blobs/" in path:
            return self._blob(path.rsplit("/", 1)[-1], wfile, head)
        return self._send(wfile, 404, b'{"errors":[{"code":"NOT_FOUND","message":"not found"}]}')

    def _manifest(self, path: str, wfile: Any, head: bool) -> bool:
        mode, raw = self.mode, self.image.manifest
        if mode == "error-escapes":
            message = "manifest unknown\n\x1b[2J\x1b[31mFAKE PROMPT $ \r"
            body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": message}]}).encode()
            return self._send(wfile, 404, body)
        headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": _digest(raw)}
        if mode == "manifest-digest-lie":
            headers["Docker-Content-Digest"] = _digest(b"other bytes")
        if mode == "bad-chunked":
            wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + raw[:10] + b"\r\n")
            wfile.flush()
            return False
        if mode == "trickle":
            out = b"HTTP/1.1 200 OK\r\nContent-Type: " + OCI_MANIFEST.encode()
            wfile.write(out + f"\r\nContent-Length: {len(raw)}\r\n\r\n".encode())
            wfile.flush()
            for byte in raw:
                wfile.write(bytes([byte]))
                wfile.flush()
                time.sleep(0.2)
            return False
        return self._send(wfile, 200, raw, headers, head=head)

    def _blob(self, digest: str, wfile: Any, head: bool) -> bool:
        mode = self.mode
        data = self.image.blobs.get(digest)
        if data is None:
            return self._send(wfile, 404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')
        is_layer = digest == self.image.layer_digest
        if mode == "redirect-ftp" and is_layer:
            return self._send(wfile, 307, b"", {"Location": f"ftp://{self.host}/{digest}"})
        if mode == "redirect-loop" and is_layer:
            return self._send(wfile, 307, b"", {"Location": f"/v2/app/blobs/{digest}"})
        if mode == "redirect-foreign" and is_layer and self.other is not None:
            return self._send(wfile, 307, b"", {"Location": f"http://localhost:{self.other.port}/{digest}"})
        if mode == "content-length-lie" and is_layer:
            wfile.write(
                f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data[: len(data) // 2]
            )
            wfile.flush()
            return False
        if mode == "blob-too-long" and is_layer:
            extra = data + b"\0" * 4096
            wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            wfile.write(f"{len(extra):x}\r\n".encode() + extra + b"\r\n0\r\n\r\n")
            wfile.flush()
            return True
        return self._send(wfile, 200, data, {"Content-Type": "application/octet-stream"}, head=head)
