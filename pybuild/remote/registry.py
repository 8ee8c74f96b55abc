"""A distribution-spec registry client: pull into a Layout, push from one, auth, retries.

Plain http for localhost/127.0.0.1/::1, https otherwise. Pull writes blobs through the layout's
verifying ``BlobStore.writer(expected=...)``; the manifest is stored and tagged only after every blob
it references is present and verified. Nothing here prints: progress goes to a callback.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import AuthError, DigestMismatch, ImageNotFound, PybuildError, RegistryError
from ..layout import Descriptor, Digest, Index, Layout, Manifest, Platform, host_platform, mediatype
from ..layout.image import platform_matches
from .auth import Credentials, find_credentials, parse_challenge
from .reference import RegistryReference

CHUNK = 1 << 20
WORKERS = 4
ATTEMPTS = 3
CHUNKED_THRESHOLD = 64 << 20
MANIFEST_LIMIT = 4 << 20
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
ACCEPT = ", ".join(
    [mediatype.OCI_MANIFEST, mediatype.OCI_INDEX, mediatype.DOCKER_MANIFEST, mediatype.DOCKER_MANIFEST_LIST]
)
_LOCAL = ("localhost", "127.0.0.1", "[::1]", "::1")
_DROPPED = (
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    http.client.RemoteDisconnected,
    http.client.IncompleteRead,
    socket.timeout,
)

#: progress(event, descriptor, n), called from worker threads: event is "start", "advance" (n bytes
#: more; negative when a dropped download restarts), "restart" (a dropped upload starts over: reset
#: the blob's bar), "skip" (already there; n = size) or "done".
Progress = Callable[[str, Descriptor, int], None]


def _no_progress(event: str, desc: Descriptor, n: int) -> None:
    pass


class _Retry(Exception):
    """A connection dropped where the request may safely be repeated."""


class ConnectionDropped(RegistryError):
    """The registry closed the connection before it answered (after any retries)."""


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    conn: http.client.HTTPConnection
    raw: http.client.HTTPResponse

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def read(self, limit: int = MANIFEST_LIMIT) -> bytes:
        try:
            data = self.raw.read(limit + 1)
        finally:
            self.close()
        if len(data) > limit:
            raise RegistryError(f"response larger than {limit} bytes")
        return data

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()
        self.conn.close()


def _error_detail(status: int, body: bytes) -> str:
    """The registry's own words from an errors JSON body, else the HTTP status."""
    try:
        doc = json.loads(body)
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = errors[0].get("message") or errors[0].get("code")
            if isinstance(message, str) and message:
                return message.lower()
    except (ValueError, UnicodeDecodeError):
        pass
    return {
        401: "unauthorized",
        403: "denied",
        404: "not found",
        405: "operation not supported",
    }.get(status, f"HTTP {status}")


class Registry:
    """One registry (host[:port]). Thread-safe: each request uses its own connection."""

    def __init__(
        self,
        host: str,
        *,
        creds: Credentials | str | None = None,
        tls_verify: bool = True,
        plain_http: bool | None = None,
        attempts: int = ATTEMPTS,
        timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.api_host = "registry-1.docker.io" if host == "docker.io" else host
        if isinstance(creds, str):
            creds = Credentials.parse(creds)
        self._creds = creds
        self._creds_looked_up = creds is not None
        self.tls_verify = tls_verify
        hostname = self.api_host.rsplit(":", 1)[0] if not self.api_host.endswith("]") else self.api_host
        self.plain_http = plain_http if plain_http is not None else hostname in _LOCAL
        self.attempts = max(1, attempts)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}  # scope -> Authorization header value
        self._basic = False

    # --- credentials and auth ----------------------------------------------------------------
    @property
    def creds(self) -> Credentials | None:
        if not self._creds_looked_up:
            self._creds = find_credentials(self.host)
            self._creds_looked_up = True
        return self._creds

    def _auth_header(self, scope: str) -> str | None:
        with self._lock:
            if scope in self._tokens:
                return self._tokens[scope]
            if self._basic and self.creds is not None:
                return f"Basic {self.creds.encoded()}"
        return None

    def _authenticate(self, challenge: str | None, scope: str, what: str, sent: str | None) -> None:
        """Answer a 401; ``sent`` is the Authorization header the refused request carried."""
        if not challenge:
            raise AuthError(f"registry {self.host}: {what}: unauthorized, and no auth challenge given")
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.creds is None:
                raise AuthError(
                    f"registry {self.host}: {what}: authentication required",
                    hints=[f"run `pybuild login {self.host}` or pass --creds USER:PASSWORD"],
                )
            if sent is not None and sent.startswith("Basic "):  # we sent them: refused
                raise AuthError(f"registry {self.host}: {what}: invalid username or password")
            with self._lock:
                self._basic = True
            return
        if scheme == "bearer":
            with self._lock:
                current = self._tokens.get(scope)
            if current is not None and current != sent:
                return  # another thread fetched a token meanwhile
            if sent is not None and sent.startswith("Bearer ") and current == sent:
                raise AuthError(f"registry {self.host}: {what}: denied: the token was refused")
            token = self._fetch_token(params, scope, what)
            with self._lock:
                self._tokens[scope] = f"Bearer {token}"
            return
        raise AuthError(f"registry {self.host}: {what}: unsupported auth scheme {scheme!r}")

    def _fetch_token(self, params: dict[str, str], scope: str, what: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"registry {self.host}: {what}: bearer challenge has no realm")
        url = urllib.parse.urlsplit(realm)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise AuthError(f"registry {self.host}: {what}: bad token realm {realm!r}")
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        # A mount needs two scopes: each goes in its own scope parameter.
        query.extend(("scope", one) for one in scope.split(" ") if one)
        path = (
            (url.path or "/") + "?" + urllib.parse.urlencode(query) + (("&" + url.query) if url.query else "")
        )
        headers = {"Accept": "application/json"}
        if self.creds is not None:
            headers["Authorization"] = f"Basic {self.creds.encoded()}"
        conn = self._connect(url.scheme, url.netloc)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read(1 << 20)
        except OSError as exc:
            raise RegistryError(f"cannot reach token server {url.netloc}: {_reason(exc)}") from None
        finally:
            conn.close()
        if resp.status in (401, 403):
            raise AuthError(f"registry {self.host}: {what}: the token server refused the credentials")
        if resp.status != 200:
            raise AuthError(f"registry {self.host}: {what}: token server answered HTTP {resp.status}")
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthError(f"registry {self.host}: {what}: the token server sent no token")
        return token

    # --- requests ----------------------------------------------------------------------------
    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if scheme == "https":
            context = ssl.create_default_context()
            if not self.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(netloc, timeout=self.timeout, context=context, blocksize=CHUNK)
        return http.client.HTTPConnection(netloc, timeout=self.timeout, blocksize=CHUNK)

    @property
    def base(self) -> str:
        return f"{'http' if self.plain_http else 'https'}://{self.api_host}"

    def request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        what: str,
        headers: dict[str, str] | None = None,
        body: Callable[[], bytes | IO[bytes]] | None = None,
        ok: tuple[int, ...] = (200,),
        retry: bool = True,
    ) -> Response:
        """Send, answering auth challenges; retry dropped connections when ``retry``.

        ``url`` is a path (``/v2/...``) or an absolute URL on this registry. Raises RegistryError
        (naming the registry and ``what``) for any status not in ``ok``.
        """
        if url.startswith("/"):
            url = self.base + url
        start = url
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                time.sleep(0.1 * attempt)
            url = start
            redirects = 0
            for _auth_round in range(3 + MAX_REDIRECTS):
                parts = urllib.parse.urlsplit(url)
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                foreign = parts.netloc != urllib.parse.urlsplit(self.base).netloc
                send = dict(headers or {})
                auth = None if foreign else self._auth_header(scope)
                if auth:
                    send["Authorization"] = auth
                conn = self._connect(parts.scheme, parts.netloc)
                try:
                    data = body() if body is not None else None
                    conn.request(method, path, body=data, headers=send)
                    raw = conn.getresponse()
                except ConnectionRefusedError:
                    conn.close()
                    raise RegistryError(f"cannot reach registry {self.host}: connection refused") from None
                except ssl.SSLError as exc:
                    conn.close()
                    raise RegistryError(
                        f"cannot reach registry {self.host}: TLS: {exc.reason or exc}",
                        hints=["pass --tls-verify=false for a registry with a self-signed certificate"],
                    ) from None
                except _DROPPED as exc:
                    conn.close()
                    if retry and attempt < self.attempts:
                        break
                    raise ConnectionDropped(
                        f"registry {self.host}: {what}: connection dropped ({_reason(exc)})"
                    ) from None
                except OSError as exc:
                    conn.close()
                    raise RegistryError(f"cannot reach registry {self.host}: {_reason(exc)}") from None
                resp = Response(raw.status, raw.headers, conn, raw)
                if resp.status in _REDIRECTS and method in ("GET", "HEAD") and resp.header("Location"):
                    # Blob storage elsewhere (S3, a CDN): follow, without our credentials when it
                    # is another host.
                    location = resp.header("Location") or ""
                    resp.close()
                    redirects += 1
                    if redirects > MAX_REDIRECTS:
                        raise RegistryError(f"registry {self.host}: {what}: too many redirects")
                    url = urllib.parse.urljoin(url, location)
                    continue
                if resp.status == 401 and not foreign:
                    challenge = resp.header("WWW-Authenticate")
                    with contextlib.suppress(Exception):
                        resp.read()
                    self._authenticate(challenge, scope, what, auth)
                    continue
                if resp.status in ok:
                    return resp
                try:
                    detail = _error_detail(resp.status, resp.read(1 << 20))
                except (RegistryError, *_DROPPED):
                    detail = f"HTTP {resp.status}"
                if resp.status == 403:
                    raise AuthError(f"registry {self.host}: {what}: {detail}")
                if resp.status >= 500 and retry and attempt < self.attempts:
                    break
                raise RegistryError(f"registry {self.host}: {what}: {detail}")
            else:
                raise AuthError(f"registry {self.host}: {what}: unauthorized")
        raise RegistryError(f"registry {self.host}: {what}: gave up after {self.attempts} attempts")

    def ping(self) -> None:
        """GET /v2/ with credentials: raises AuthError when they are refused."""
        self.request("GET", "/v2/", scope="", what="checking credentials").read()

    # --- manifests ---------------------------------------------------------------------------
    def get_manifest(self, ref: RegistryReference, what: str) -> tuple[Descriptor, bytes]:
        """The manifest or index ``ref`` names, its digest verified; (descriptor, exact bytes)."""
        resp = self.request(
            "GET",
            f"/v2/{ref.repository}/manifests/{ref.reference}",
            scope=f"repository:{ref.repository}:pull",
            what=what,
            headers={"Accept": ACCEPT},
        )
        content_type = (resp.header("Content-Type") or "").split(";")[0].strip()
        header_digest = resp.header("Docker-Content-Digest")
        try:
            raw = resp.read()
        except _DROPPED as exc:
            raise RegistryError(
                f"registry {self.host}: {what}: connection dropped ({_reason(exc)})"
            ) from None
        return self._manifest_descriptor(ref, raw, content_type, header_digest, what), raw

    def _manifest_descriptor(
        self, ref: RegistryReference, raw: bytes, content_type: str, header_digest: str | None, what: str
    ) -> Descriptor:
        algorithm = ref.digest.algorithm if ref.digest is not None else "sha256"
        actual = Digest.of_bytes(raw, algorithm)
        if ref.digest is not None and actual != ref.digest:
            raise DigestMismatch(
                f"registry {self.host}: {what}: manifest has digest {actual}, expected {ref.digest}"
            )
        if header_digest and ref.digest is None:
            try:
                claimed = Digest.parse(header_digest)
            except PybuildError:
                claimed = None
            if claimed is not None and claimed.algorithm == actual.algorithm and claimed != actual:
                raise DigestMismatch(
                    f"registry {self.host}: {what}: manifest has digest {actual}, registry says {claimed}"
                )
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise RegistryError(f"registry {self.host}: {what}: manifest is not JSON") from None
        media = doc.get("mediaType") if isinstance(doc, dict) else None
        if not isinstance(media, str):
            media = content_type
            if media not in mediatype.MANIFESTS | mediatype.INDEXES:
                media = (
                    mediatype.OCI_INDEX
                    if isinstance(doc, dict) and "manifests" in doc
                    else mediatype.OCI_MANIFEST
                )
        if media not in mediatype.MANIFESTS | mediatype.INDEXES:
            raise RegistryError(f"registry {self.host}: {what}: unsupported manifest type {media}")
        return Descriptor(media, actual, len(raw))

    def has_blob(self, repository: str, digest: Digest, what: str) -> bool:
        resp = self.request(
            "HEAD",
            f"/v2/{repository}/blobs/{digest}",
            scope=f"repository:{repository}:pull",
            what=what,
            ok=(200, 404),
        )
        resp.close()
        return resp.status == 200

    @contextlib.contextmanager
    def open_blob(self, repository: str, digest: Digest, what: str) -> Iterator[Response]:
        resp = self.request(
            "GET", f"/v2/{repository}/blobs/{digest}", scope=f"repository:{repository}:pull", what=what
        )
        try:
            yield resp
        finally:
            resp.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


# --- pull ------------------------------------------------------------------------------------------


def pick_manifest(index: Index, platform: Platform | None, host: str, what: str) -> Descriptor:
    want = platform or host_platform()
    found = [
        m
        for m in index.manifests
        if m.media_type in mediatype.MANIFESTS and platform_matches(want, m.platform)
    ]
    if not found and platform is None and len(index.manifests) == 1:
        found = list(index.manifests)
    if not found:
        offered = ", ".join(str(m.platform) for m in index.manifests if m.platform) or "none"
        raise ImageNotFound(f"registry {host}: {what}: no image for {want} (it has: {offered})")
    exact = [m for m in found if m.platform is not None and m.platform.variant == want.variant]
    return (exact or found)[0]


def _download(
    registry: Registry, layout: Layout, repository: str, desc: Descriptor, what: str, progress: Progress
) -> None:
    """Stream one blob into the store, verified; a dropped connection restarts it (limited)."""
    if layout.blobs.exists(desc.digest):
        progress("skip", desc, desc.size)
        return
    progress("start", desc, 0)
    for attempt in range(1, registry.attempts + 1):
        done = 0
        try:
            with (
                registry.open_blob(repository, desc.digest, what) as resp,
                layout.blobs.writer(desc.digest.algorithm, expected=desc.digest) as writer,
            ):
                while chunk := resp.raw.read(CHUNK):
                    done += len(chunk)
                    if done > desc.size:
                        raise DigestMismatch(
                            f"registry {registry.host}: {what}: blob {desc.digest} is larger than {desc.size}"
                        )
                    writer.write(chunk)
                    progress("advance", desc, len(chunk))
                if done != desc.size:
                    raise _Retry(f"got {done} of {desc.size} bytes")
        except (_Retry, *_DROPPED) as exc:
            progress("advance", desc, -done)
            if attempt == registry.attempts:
                raise RegistryError(
                    f"registry {registry.host}: {what}: blob {desc.digest} dropped ({_reason(exc)})"
                ) from None
            continue
        except DigestMismatch as exc:
            raise DigestMismatch(f"registry {registry.host}: {what}: {exc}") from None
        progress("done", desc, desc.size)
        return


def pull(
    ref: RegistryReference,
    layout: Layout,
    tag: str | None = None,
    *,
    platform: Platform | None = None,
    creds: Credentials | str | None = None,
    tls_verify: bool = True,
    progress: Progress | None = None,
    registry: Registry | None = None,
    workers: int = WORKERS,
) -> Descriptor:
    """Pull the image ``ref`` names into ``layout`` (the manifest for ``platform`` from an index).

    Blobs stream in parallel through the verifying writer; those present are skipped. The manifest is
    written and ``tag`` set only once everything is present and verified. Returns the manifest's
    descriptor.
    """
    progress = progress or _no_progress
    registry = registry or Registry(ref.registry, creds=creds, tls_verify=tls_verify)
    what = f"pulling {ref.short}"
    desc, raw = registry.get_manifest(ref, what)
    if desc.media_type in mediatype.INDEXES:
        index = Index.parse(raw, f"registry {registry.host}: {what}: index")
        chosen = pick_manifest(index, platform, registry.host, what)
        desc, raw = registry.get_manifest(ref.with_digest(chosen.digest), what)
        if desc.media_type not in mediatype.MANIFESTS:
            raise RegistryError(f"registry {registry.host}: {what}: {chosen.digest} is not an image manifest")
        desc = Descriptor(desc.media_type, desc.digest, desc.size, platform=chosen.platform)
    manifest = Manifest.parse(raw, f"registry {registry.host}: {what}: manifest {desc.digest}")
    blobs = [manifest.config, *manifest.layers]
    for blob in blobs:
        if not blob.digest.registered:
            raise RegistryError(f"registry {registry.host}: {what}: unsupported digest {blob.digest}")
    with layout.writing():
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [
                pool.submit(_download, registry, layout, ref.repository, blob, what, progress)
                for blob in blobs
            ]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        digest, size = layout.blobs.put(raw, desc.digest.algorithm)
        assert digest == desc.digest and size == desc.size
        if tag is not None:
            layout.set_tag(tag, desc)
    return desc


# --- push ------------------------------------------------------------------------------------------


def _children(layout: Layout, desc: Descriptor) -> list[Descriptor]:
    raw = layout.blobs.read(desc.digest, desc.size)
    if desc.media_type in mediatype.INDEXES:
        return list(Index.parse(raw, f"index {desc.digest} in {layout.label}").manifests)
    manifest = Manifest.parse(raw, f"manifest {desc.digest} in {layout.label}")
    return [manifest.config, *manifest.layers]


def _upload(
    registry: Registry,
    layout: Layout,
    repository: str,
    desc: Descriptor,
    what: str,
    progress: Progress,
    mount_from: str | None,
    chunk_size: int,
    chunked_threshold: int,
) -> None:
    """Upload one blob; a connection dropped mid-upload starts a new upload session (limited)."""
    for attempt in range(1, registry.attempts + 1):
        try:
            _upload_once(
                registry, layout, repository, desc, what, progress, mount_from, chunk_size, chunked_threshold
            )
            return
        except ConnectionDropped:
            if attempt == registry.attempts:
                raise
            progress("restart", desc, 0)
            time.sleep(0.1 * attempt)


def _upload_once(
    registry: Registry,
    layout: Layout,
    repository: str,
    desc: Descriptor,
    what: str,
    progress: Progress,
    mount_from: str | None,
    chunk_size: int,
    chunked_threshold: int,
) -> None:
    scope = f"repository:{repository}:pull,push"
    if registry.has_blob(repository, desc.digest, what):
        progress("skip", desc, desc.size)
        return
    progress("start", desc, 0)
    start_url = f"/v2/{repository}/blobs/uploads/"
    if mount_from and mount_from != repository:
        query = urllib.parse.urlencode({"mount": str(desc.digest), "from": mount_from})
        resp = registry.request(
            "POST",
            f"{start_url}?{query}",
            scope=f"{scope} repository:{mount_from}:pull",
            what=what,
            headers={"Content-Length": "0"},
            ok=(201, 202),
            retry=False,
        )
        resp.read()
        if resp.status == 201:
            progress("done", desc, desc.size)
            return
    else:
        resp = registry.request(
            "POST", start_url, scope=scope, what=what, headers={"Content-Length": "0"}, ok=(202,), retry=False
        )
        resp.read()
    location = _location(registry, resp, what)

    def with_digest(url: str) -> str:
        return url + ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": str(desc.digest)})

    if desc.size < chunked_threshold:

        def body() -> IO[bytes]:
            return _ProgressReader(  # type: ignore[return-value]
                layout, desc, progress
            )

        resp = registry.request(
            "PUT",
            with_digest(location),
            scope=scope,
            what=what,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
            body=body,
            ok=(201,),
            retry=False,
        )
        resp.read()
    else:
        offset = 0
        with layout.blobs.open(desc.digest, desc.size) as reader:
            while True:
                chunk = reader.read(chunk_size)
                if not chunk:
                    break
                end = offset + len(chunk) - 1
                resp = registry.request(
                    "PATCH",
                    location,
                    scope=scope,
                    what=what,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(len(chunk)),
                        "Content-Range": f"{offset}-{end}",
                    },
                    body=lambda chunk=chunk: chunk,  # type: ignore[misc]
                    ok=(202,),
                    retry=False,
                )
                resp.read()
                location = _location(registry, resp, what)
                offset = end + 1
                progress("advance", desc, len(chunk))
        resp = registry.request(
            "PUT",
            with_digest(location),
            scope=scope,
            what=what,
            headers={"Content-Length": "0"},
            ok=(201,),
            retry=False,
        )
        resp.read()
    progress("done", desc, desc.size)


class _ProgressReader(io.RawIOBase):
    """A verified reader of a blob that reports progress as http.client reads it."""

    def __init__(self, layout: Layout, desc: Descriptor, progress: Progress) -> None:
        super().__init__()
        self._stack = contextlib.ExitStack()
        self._f = self._stack.enter_context(layout.blobs.open(desc.digest, desc.size))
        self._desc = desc
        self._progress = progress

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size if size and size > 0 else CHUNK)
        if data:
            self._progress("advance", self._desc, len(data))
        else:
            self._stack.close()
        return data

    def close(self) -> None:
        self._stack.close()
        super().close()


def _location(registry: Registry, resp: Response, what: str) -> str:
    location = resp.header("Location")
    if not location:
        raise RegistryError(f"registry {registry.host}: {what}: upload answered without a Location")
    return urllib.parse.urljoin(registry.base + "/", location)


def push(
    layout: Layout,
    desc: Descriptor,
    ref: RegistryReference,
    *,
    creds: Credentials | str | None = None,
    tls_verify: bool = True,
    progress: Progress | None = None,
    mount_from: str | None = None,
    chunked_threshold: int = CHUNKED_THRESHOLD,
    chunk_size: int = 16 << 20,
    registry: Registry | None = None,
    workers: int = WORKERS,
) -> Digest:
    """Push the manifest or index ``desc`` from ``layout`` to ``ref`` (by tag); its digest.

    Blobs the registry has are skipped; ``mount_from`` (a repository on the same registry) is tried
    as a cross-repository mount first; blobs of ``chunked_threshold`` bytes or more go up in PATCH
    chunks of ``chunk_size``.
    """
    progress = progress or _no_progress
    registry = registry or Registry(ref.registry, creds=creds, tls_verify=tls_verify)
    what = f"pushing {ref.short}"
    _push_tree(
        registry,
        layout,
        desc,
        ref,
        what,
        progress,
        mount_from,
        chunk_size,
        chunked_threshold,
        workers,
        top=True,
    )
    return desc.digest


def _push_tree(
    registry: Registry,
    layout: Layout,
    desc: Descriptor,
    ref: RegistryReference,
    what: str,
    progress: Progress,
    mount_from: str | None,
    chunk_size: int,
    chunked_threshold: int,
    workers: int,
    top: bool,
) -> None:
    children = _children(layout, desc)
    if desc.media_type in mediatype.INDEXES:
        for child in children:
            if child.media_type in mediatype.MANIFESTS | mediatype.INDEXES:
                _push_tree(
                    registry,
                    layout,
                    child,
                    ref,
                    what,
                    progress,
                    mount_from,
                    chunk_size,
                    chunked_threshold,
                    workers,
                    top=False,
                )
    else:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [
                pool.submit(
                    _upload,
                    registry,
                    layout,
                    ref.repository,
                    child,
                    what,
                    progress,
                    mount_from,
                    chunk_size,
                    chunked_threshold,
                )
                for child in children
            ]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
    raw = layout.blobs.read(desc.digest, desc.size)
    target = (ref.tag or "latest") if top and ref.digest is None else str(desc.digest)
    resp = registry.request(
        "PUT",
        f"/v2/{ref.repository}/manifests/{target}",
        scope=f"repository:{ref.repository}:pull,push",
        what=what,
        headers={"Content-Type": desc.media_type, "Content-Length": str(len(raw))},
        body=lambda: raw,
        ok=(201,),
    )
    resp.read()
    answered = resp.header("Docker-Content-Digest")
    if answered and answered != str(desc.digest) and answered.startswith(f"{desc.digest.algorithm}:"):
        raise RegistryError(f"registry {registry.host}: {what}: registry stored the manifest as {answered}")


def login(
    registry: str,
    username: str,
    password: str,
    *,
    tls_verify: bool = True,
    auth_file: Path | None = None,
    verify: bool = True,
) -> None:
    """Check ``username``/``password`` against ``registry`` (unless ``verify`` is False) and store them."""
    from .auth import store_credentials

    creds = Credentials(username, password)
    if verify:
        Registry(registry, creds=creds, tls_verify=tls_verify).ping()
    store_credentials(registry, creds, auth_file)


def logout(registry: str, *, auth_file: Path | None = None) -> bool:
    """Forget the credentials stored for ``registry``; False when there were none."""
    from .auth import remove_credentials

    return remove_credentials(registry, auth_file)
