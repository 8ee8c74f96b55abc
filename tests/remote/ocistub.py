"""A small in-memory OCI registry (stdlib only) that serves the referrers API, for the referrers tests.

It speaks what pybuild uses of distribution-spec v1.1: ``/v2/``; blobs HEAD/GET, uploads POST
(a mount is refused: a new session opens), PATCH and PUT with ``?digest=``; manifests HEAD/GET/PUT
by tag or digest (a PUT's config, layers and index entries must be there, as docker-registry
checks; its ``subject`` need not be); ``ETag`` on manifests; tags list; and, with
``referrers_api``, ``GET /v2/<name>/referrers/<digest>[?artifactType=]`` (``OCI-Filters-Applied``
when filtered, ``Link`` pages of ``page_size``) and ``OCI-Subject`` on the PUT of a manifest with
a subject. Without it, the referrers route answers 404 as docker-registry 2.8 does.

``conditional`` honours ``If-Match`` and ``If-None-Match: *`` on manifest PUTs (412 when the tag
changed). ``before_put(repo, reference, body)`` and ``after_put`` run just before and after a
manifest PUT is stored: a test makes another client's write land there. ``override[path]`` =
(status, headers, body) answers a GET of that path (the query left out) with whatever a test
needs, hostile or not. ``requests`` records (method, path with query, headers) of each request.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFESTS = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEXES = (OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")
_ROUTE = re.compile(
    r"^/v2/(?P<name>.+?)/(?P<kind>blobs/uploads|blobs|manifests|referrers|tags)(?:/(?P<rest>.*))?$"
)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Repository:
    def __init__(self) -> None:
        self.manifests: dict[str, tuple[str, bytes]] = {}  # digest -> (media type, bytes)
        self.tags: dict[str, str] = {}  # tag -> digest


class StubRegistry:
    def __init__(self, *, referrers_api: bool = True, conditional: bool = False, page_size: int = 0) -> None:
        self.referrers_api = referrers_api
        self.conditional = conditional
        self.page_size = page_size
        self.blobs: dict[str, bytes] = {}
        self.repos: dict[str, Repository] = {}
        self.uploads: dict[str, bytearray] = {}
        self.override: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.before_put: Callable[[str, str, bytes], None] | None = None
        self.after_put: Callable[[str, str, bytes], None] | None = None
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.RLock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                with stub.lock:
                    stub.requests.append((self.command, self.path, headers))
                status, out_headers, out = stub.answer(self.command, self.path, headers, body)
                self.send_response(status)
                out_headers = {"Content-Length": str(len(out)), **out_headers}
                for key, value in out_headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what tests read and seed --------------------------------------------------------------
    def repo(self, name: str) -> Repository:
        with self.lock:
            return self.repos.setdefault(name, Repository())

    def manifest(self, name: str, reference: str) -> bytes:
        repo = self.repo(name)
        return repo.manifests[repo.tags.get(reference, reference)][1]

    def put_manifest(self, name: str, reference: str, raw: bytes, media_type: str) -> str:
        """Store a manifest as a client's PUT would (no checks): its digest."""
        digest = digest_of(raw)
        with self.lock:
            repo = self.repo(name)
            repo.manifests[digest] = (media_type, raw)
            if not reference.startswith("sha256:"):
                repo.tags[reference] = digest
        return digest

    def referrers_of(self, name: str, subject: str) -> list[dict[str, Any]]:
        out = []
        for digest, (media_type, raw) in sorted(self.repo(name).manifests.items()):
            doc = json.loads(raw)
            if (doc.get("subject") or {}).get("digest") != subject:
                continue
            entry: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(raw)}
            artifact_type = doc.get("artifactType") or (
                doc.get("config", {}).get("mediaType") if media_type in MANIFESTS else None
            )
            if artifact_type:
                entry["artifactType"] = artifact_type
            if doc.get("annotations"):
                entry["annotations"] = doc["annotations"]
            out.append(entry)
        return out

    # --- answers -------------------------------------------------------------------------------
    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        url = urllib.parse.urlsplit(path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if method == "GET" and url.path in self.override:
            return self.override[url.path]
        if url.path in ("/v2/", "/v2"):
            return 200, {"Content-Type": "application/json"}, b"{}"
        match = _ROUTE.match(url.path)
        if match is None:
            return _error(404, "NOT_FOUND", "not found")
        name, kind, rest = match["name"], match["kind"], match["rest"] or ""
        with self.lock:
            if kind == "blobs":
                return self._blob(method, rest)
            if kind == "blobs/uploads":
                return self._upload(method, name, rest, query, body)
            if kind == "manifests":
                return self._manifest(method, name, rest, headers, body)
            if kind == "tags" and rest == "list":
                return (
                    200,
                    {"Content-Type": "application/json"},
                    json.dumps({"name": name, "tags": sorted(self.repo(name).tags)}).encode(),
                )
            if kind == "referrers" and self.referrers_api and method == "GET":
                return self._referrers(name, rest, query)
        return _error(404, "NOT_FOUND", "not found")

    def _blob(self, method: str, digest: str) -> tuple[int, dict[str, str], bytes]:
        data = self.blobs.get(digest)
        if data is None:
            return _error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"}
        if method == "HEAD":
            return 200, {**headers, "Content-Length": str(len(data))}, b""
        return 200, headers, data

    def _upload(
        self, method: str, name: str, session: str, query: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if method == "POST":
            session = uuid.uuid4().hex
            self.uploads[session] = bytearray(body)
            return 202, {"Location": f"/v2/{name}/blobs/uploads/{session}", "Range": "0-0"}, b""
        if session not in self.uploads:
            return _error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        self.uploads[session] += body
        if method == "PATCH":
            end = len(self.uploads[session]) - 1
            return 202, {"Location": f"/v2/{name}/blobs/uploads/{session}", "Range": f"0-{end}"}, b""
        if method == "PUT":
            data = bytes(self.uploads.pop(session))
            if digest_of(data) != query.get("digest"):
                return _error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
            self.blobs[digest_of(data)] = data
            return (
                201,
                {"Location": f"/v2/{name}/blobs/{digest_of(data)}", "Docker-Content-Digest": digest_of(data)},
                b"",
            )
        return _error(405, "UNSUPPORTED", "the operation is unsupported")

    def _manifest(
        self, method: str, name: str, reference: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        repo = self.repo(name)
        if method in ("GET", "HEAD"):
            digest = repo.tags.get(reference, reference)
            if digest not in repo.manifests:
                return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
            media_type, raw = repo.manifests[digest]
            out = {"Content-Type": media_type, "Docker-Content-Digest": digest, "ETag": f'"{digest}"'}
            return 200, out, raw
        if method != "PUT":
            return _error(405, "UNSUPPORTED", "the operation is unsupported")
        if self.before_put is not None:
            self.before_put(name, reference, body)
        if self.conditional and not reference.startswith("sha256:"):
            current = repo.tags.get(reference)
            match = headers.get("if-match")
            if match is not None and match != f'"{current}"':
                return _error(412, "PRECONDITION_FAILED", "the tag changed")
            if headers.get("if-none-match") == "*" and current is not None:
                return _error(412, "PRECONDITION_FAILED", "the tag exists")
        try:
            doc = json.loads(body)
        except ValueError:
            return _error(400, "MANIFEST_INVALID", "manifest invalid")
        media_type = headers.get("content-type", "")
        if doc.get("mediaType", media_type) != media_type:
            return _error(400, "MANIFEST_INVALID", "media type does not match")
        missing = self._missing(repo, doc, media_type)
        if missing:
            return _error(400, "MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {missing}")
        if reference.startswith("sha256:") and reference != digest_of(body):
            return _error(400, "DIGEST_INVALID", "manifest digest does not match")
        digest = self.put_manifest(name, reference, body, media_type)
        if self.after_put is not None:
            self.after_put(name, reference, body)
        out = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        if self.referrers_api and isinstance(doc.get("subject"), dict):
            out["OCI-Subject"] = doc["subject"]["digest"]
        return 201, out, b""

    def _missing(self, repo: Repository, doc: dict[str, Any], media_type: str) -> str | None:
        if media_type in INDEXES:
            for entry in doc.get("manifests", []):
                if entry["digest"] not in repo.manifests:
                    return str(entry["digest"])
            return None
        for blob in [doc.get("config", {}), *doc.get("layers", [])]:
            if blob.get("digest") not in self.blobs:
                return str(blob.get("digest"))
        return None

    def _referrers(self, name: str, subject: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if not subject.startswith("sha256:") or len(subject) != 71:
            return _error(400, "DIGEST_INVALID", "invalid digest")
        found = self.referrers_of(name, subject)
        headers = {"Content-Type": OCI_INDEX}
        if query.get("artifactType"):
            found = [e for e in found if e.get("artifactType") == query["artifactType"]]
            headers["OCI-Filters-Applied"] = "artifactType"
        start = int(query.get("last") or 0)
        if self.page_size:
            page = found[start : start + self.page_size]
            if start + self.page_size < len(found):
                rest = {k: v for k, v in query.items() if k != "last"}
                rest["last"] = str(start + self.page_size)
                headers["Link"] = (
                    f'</v2/{name}/referrers/{subject}?{urllib.parse.urlencode(rest)}>; rel="next"'
                )
            found = page
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}).encode()
        return 200, headers, body


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    return status, {"Content-Type": "application/json"}, body
