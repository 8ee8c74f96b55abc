"""A token server for docker-registry's ``auth: token:`` mode, for tests.

It signs JWTs (RS256, PKCS#1 v1.5 done with Python integers) with an RSA key made by openssl; the
registry trusts the key through ``rootcertbundle`` and finds it by ``kid``, the libtrust key ID of the
public key. Tokens go to ``alice:s3cret`` and grant the actions asked for in each ``scope``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ISSUER = "pybuild-test-issuer"
SERVICE = "pybuild-test-registry"
_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _openssl_int(text: str, field: str) -> int:
    block = re.search(rf"^{field}:\s*\n((?:\s+[0-9a-f:]+\n)+)", text, re.MULTILINE)
    assert block is not None, f"openssl output has no {field}"
    return int(re.sub(r"[\s:]", "", block.group(1)), 16)


class TokenServer:
    def __init__(self, openssl: str, folder: Path) -> None:
        self.key = folder / "token-key.pem"
        self.cert = folder / "token-cert.pem"
        subprocess.run([openssl, "genrsa", "-out", str(self.key), "2048"], check=True, capture_output=True)
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-key",
                str(self.key),
                "-subj",
                "/CN=pybuild-token",
                "-days",
                "1",
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
        )
        text = subprocess.run(
            [openssl, "rsa", "-in", str(self.key), "-noout", "-text"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.n = _openssl_int(text, "modulus")
        self.d = _openssl_int(text, "privateExponent")
        der = subprocess.run(
            [openssl, "rsa", "-in", str(self.key), "-pubout", "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
        self.kid = ":".join(encoded[i : i + 4] for i in range(0, 48, 4))
        self.requests: list[dict[str, list[str]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TokenServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        digest = hashlib.sha256(signing_input.encode()).digest()
        k = (self.n.bit_length() + 7) // 8
        t = _SHA256_PREFIX + digest
        em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
        signature = pow(int.from_bytes(em, "big"), self.d, self.n).to_bytes(k, "big")
        return f"{signing_input}.{_b64url(signature)}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                server.requests.append(query)
                expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                access = []
                for scope in query.get("scope", []):
                    kind, name, actions = (
                        scope.split(":")[0],
                        ":".join(scope.split(":")[1:-1]),
                        scope.split(":")[-1],
                    )
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
                now = int(time.time())
                claims = {
                    "iss": ISSUER,
                    "sub": "alice",
                    "aud": query.get("service", [""])[0],
                    "exp": now + 300,
                    "nbf": now - 10,
                    "iat": now,
                    "jti": f"{now}-{len(server.requests)}",
                    "access": access,
                }
                body = json.dumps({"token": server.sign(claims), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
