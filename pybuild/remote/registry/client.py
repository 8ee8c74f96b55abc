"""One registry: requests with auth challenges, redirects, retries; manifests and blobs.

Plain http for localhost/127.0.0.1/::1, https otherwise. Redirects are followed only to http or
https (never from https down to http); credentials go only to the registry's own host, or to the
token realm its challenge names.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ...errors import AuthError, DigestMismatch, PybuildError, RegistryError
from ...layout import Descriptor, Digest, mediatype
from ...layout.document import DOCUMENT_LIMIT, nesting_exceeds
from ..auth import Credentials, find_credentials, parse_challenge
from ..reference import RegistryReference
from .connection import HTTP, ConnectionDropped, Response, cert_dir_for, deadline_for, ssl_context

ATTEMPTS = 3
MAX_REDIRECTS = 5
TOKEN_LIMIT = 1 << 20
ERROR_LIMIT = 64 << 10
_REDIRECTS = (301, 302, 303, 307, 308)
ACCEPT = ", ".join(
    [mediatype.OCI_MANIFEST, mediatype.OCI_INDEX, mediatype.DOCKER_MANIFEST, mediatype.DOCKER_MANIFEST_LIST]
)
_LOCAL = ("localhost", "127.0.0.1", "[::1]", "::1")
_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?', re.IGNORECASE)
TAGS_LIMIT = 4 << 20


@dataclass(frozen=True)
class RegistryOptions:
    """How to talk to a registry, as the registry flags say: ``--creds``, ``--tls-verify``,
    ``--cert-dir`` and ``--authfile``."""

    creds: Credentials | str | None = None
    tls_verify: bool = True
    cert_dir: Path | None = None
    auth_file: Path | None = None

    def registry(self, host: str) -> Registry:
        return Registry(
            host,
            creds=self.creds,
            tls_verify=self.tls_verify,
            cert_dir=self.cert_dir,
            auth_file=self.auth_file,
        )


def _json(body: bytes) -> object:
    """Parsed JSON of a small answer (error bodies, tokens), or None: never a deep parse."""
    if nesting_exceeds(body):
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _error_detail(status: int, body: bytes) -> str:
    """The registry's own words from an errors JSON body, else the HTTP status."""
    doc = _json(body)
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        message = errors[0].get("message") or errors[0].get("code")
        if isinstance(message, str) and message:
            return message.lower()[:200]
    return {
        401: "unauthorized",
        403: "denied",
        404: "not found",
        405: "operation not supported",
    }.get(status, f"HTTP {status}")


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc.lower()


class Registry:
    """One registry (host[:port]). Thread-safe; its connections are pooled and reused."""

    def __init__(
        self,
        host: str,
        *,
        creds: Credentials | str | None = None,
        tls_verify: bool = True,
        plain_http: bool | None = None,
        attempts: int = ATTEMPTS,
        cert_dir: Path | None = None,
        auth_file: Path | None = None,
    ) -> None:
        self.host = host
        self.api_host = "registry-1.docker.io" if host == "docker.io" else host
        if isinstance(creds, str):
            creds = Credentials.parse(creds)
        self._creds = creds
        self._creds_looked_up = creds is not None
        self._auth_file = auth_file
        self.tls_verify = tls_verify
        hostname = self.api_host.rsplit(":", 1)[0] if not self.api_host.endswith("]") else self.api_host
        # a registry on this machine: plain http, or https when it answers that it speaks only that
        # (Go's and nginx's 400 to a plain request on a TLS port); its certificate is then verified
        # unless --tls-verify=false
        self._probe = plain_http is None and hostname in _LOCAL
        self.plain_http = plain_http if plain_http is not None else hostname in _LOCAL
        self.attempts = max(1, attempts)
        certs = cert_dir_for(host, cert_dir)  # (checked now: a wrong --cert-dir fails at once)
        self.http = HTTP(lambda: ssl_context(tls_verify, certs), lambda: ssl_context(tls_verify, None))
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}  # scope -> Authorization header value
        self._basic = False

    # --- credentials and auth ----------------------------------------------------------------
    @property
    def creds(self) -> Credentials | None:
        if not self._creds_looked_up:
            files = [self._auth_file] if self._auth_file is not None else None
            self._creds = find_credentials(self.host, files)
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
        raise AuthError(f"registry {self.host}: {what}: unsupported auth scheme {scheme[:40]!r}")

    def _fetch_token(self, params: dict[str, str], scope: str, what: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"registry {self.host}: {what}: bearer challenge has no realm")
        url = urllib.parse.urlsplit(realm)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise AuthError(f"registry {self.host}: {what}: bad token realm {realm[:200]!r}")
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        # A mount needs two scopes: each goes in its own scope parameter.
        query.extend(("scope", one) for one in scope.split(" ") if one)
        target = urllib.parse.urlunsplit(
            (
                url.scheme,
                url.netloc,
                url.path or "/",
                "&".join(x for x in (urllib.parse.urlencode(query), url.query) if x),
                "",
            )
        )
        headers = {"Accept": "application/json"}
        if self.creds is not None:  # the realm the registry named is the one other host that gets them
            headers["Authorization"] = f"Basic {self.creds.encoded()}"
        token_what = f"{what}: token from {url.netloc}"
        resp = self.http.send(
            "GET",
            target,
            host=self.host,
            what=token_what,
            headers=headers,
            body=None,
            seconds=deadline_for(),
            foreign=_origin(target) != _origin(self.base),
        )
        status = resp.status
        body = resp.read(TOKEN_LIMIT)
        if status in (401, 403):
            raise AuthError(f"registry {self.host}: {what}: the token server refused the credentials")
        if status != 200:
            raise AuthError(f"registry {self.host}: {what}: token server answered HTTP {status}")
        doc = _json(body)
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token or not token.isprintable():
            raise AuthError(f"registry {self.host}: {what}: the token server sent no valid token")
        return token

    # --- requests ----------------------------------------------------------------------------
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
        size: int | None = None,
    ) -> Response:
        """Send, answering auth challenges and following redirects; retry dropped connections when
        ``retry``. ``url`` is a path (``/v2/...``) or an absolute URL on this registry; ``size`` is
        the body expected either way (it sets the deadline). Raises RegistryError (naming the
        registry and ``what``) for any status not in ``ok``."""
        path = url if url.startswith("/") else None
        start = self.base + url if path is not None else url
        own = _origin(self.base)
        seconds = deadline_for(size)
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                time.sleep(0.1 * attempt)
            url = start
            redirects = 0
            for _round in range(3 + MAX_REDIRECTS):
                foreign = _origin(url) != own
                send = dict(headers or {})
                auth = None if foreign else self._auth_header(scope)
                if auth:
                    send["Authorization"] = auth
                try:
                    resp = self.http.send(
                        method,
                        url,
                        host=self.host,
                        what=what,
                        headers=send,
                        body=body() if body is not None else None,
                        seconds=seconds,
                        foreign=foreign,
                    )
                except ConnectionDropped:
                    if retry and attempt < self.attempts:
                        break
                    raise
                if self._probe and not foreign and path is not None and url == start:
                    if resp.status == 400 and url.startswith("http:"):
                        resp.close()
                        if self._speaks_only_https(what):
                            with self._lock:  # (another thread may have found it out first)
                                self.plain_http = False
                        if not self.plain_http:
                            url = start = self.base + path
                            own = _origin(self.base)
                            continue
                        raise RegistryError(f"registry {self.host}: {what}: HTTP 400")
                    self._probe = False
                if resp.status in _REDIRECTS and method in ("GET", "HEAD"):
                    url = self._redirect(url, resp, what)
                    redirects += 1
                    if redirects > MAX_REDIRECTS:
                        raise RegistryError(f"registry {self.host}: {what}: too many redirects")
                    continue
                if resp.status == 401 and not foreign:
                    challenge = resp.header("WWW-Authenticate")
                    with contextlib.suppress(RegistryError):
                        resp.read(ERROR_LIMIT)
                    self._authenticate(challenge, scope, what, auth)
                    continue
                if resp.status in ok:
                    return resp
                try:
                    detail = _error_detail(resp.status, resp.read(ERROR_LIMIT))
                except RegistryError:
                    detail = f"HTTP {resp.status}"
                if resp.status == 403:
                    raise AuthError(f"registry {self.host}: {what}: {detail}")
                if resp.status >= 500 and retry and attempt < self.attempts:
                    break
                raise RegistryError(f"registry {self.host}: {what}: {detail}")
            else:
                raise AuthError(f"registry {self.host}: {what}: unauthorized")
        raise RegistryError(f"registry {self.host}: {what}: gave up after {self.attempts} attempts")

    def _speaks_only_https(self, what: str) -> bool:
        """Whether the local registry answered a plain request with a 400 that asks for HTTPS."""
        resp = self.http.send(
            "GET",
            f"http://{self.api_host}/v2/",
            host=self.host,
            what=what,
            headers={},
            body=None,
            seconds=deadline_for(),
            foreign=False,
        )
        status = resp.status
        try:
            body = resp.read(ERROR_LIMIT)
        except RegistryError:
            return False
        return status == 400 and b"HTTPS" in body

    def _redirect(self, url: str, resp: Response, what: str) -> str:
        """Where a redirect points: http or https only, never from https down to http."""
        location = resp.header("Location")
        resp.close()
        if not location:
            raise RegistryError(f"registry {self.host}: {what}: redirect without a Location")
        target = urllib.parse.urljoin(url, location.strip())
        scheme = urllib.parse.urlsplit(target).scheme.lower()
        shown = target if len(target) <= 120 else target[:117] + "..."
        if scheme not in ("http", "https"):
            raise RegistryError(f"registry {self.host}: {what}: refused a redirect to {shown!r}")
        if scheme == "http" and urllib.parse.urlsplit(url).scheme == "https":
            raise RegistryError(f"registry {self.host}: {what}: refused a redirect from https to {shown!r}")
        return target

    def pages(
        self,
        url: str,
        *,
        scope: str,
        what: str,
        headers: dict[str, str],
        error: type[RegistryError],
        limit: int,
        listing: str,
    ) -> Iterator[Response]:
        """The answers for a paged listing at ``url`` (200 or 404), following ``Link: <...>;
        rel="next"`` on this registry's http(s), at most ``limit`` pages (else ``error``)."""
        for _ in range(limit):
            resp = self.request("GET", url, scope=scope, what=what, headers=headers, ok=(200, 404))
            link = _LINK.search(resp.header("Link") or "")
            yield resp
            if resp.status != 200 or link is None:
                return
            url = urllib.parse.urljoin(self.base + url if url.startswith("/") else url, link.group(1))
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise error(f"registry {self.host}: {what}: refused a next page at {url[:100]!r}")
        raise error(f"registry {self.host}: {what}: {listing} has more than {limit} pages")

    def tags(self, repository: str, what: str, limit: int = 256) -> list[str]:
        """Every tag of ``repository`` (``/v2/NAME/tags/list``, paged); none when it is unknown."""
        found: list[str] = []
        url = f"/v2/{repository}/tags/list?n=1000"
        scope = f"repository:{repository}:pull"
        for resp in self.pages(
            url, scope=scope, what=what, headers={}, error=RegistryError, limit=limit, listing="the tag list"
        ):
            if resp.status == 404:
                resp.close()
                return found
            doc = _json(resp.read(TAGS_LIMIT))
            tags = doc.get("tags") if isinstance(doc, dict) else None
            if tags is None:
                continue
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise RegistryError(f"registry {self.host}: {what}: the tag list is not a list of tags")
            found += tags
        return found

    def has_manifest(self, ref: RegistryReference, what: str) -> bool:
        """Whether the registry has the manifest ``ref`` names (a HEAD: nothing is downloaded)."""
        resp = self.request(
            "HEAD",
            f"/v2/{ref.repository}/manifests/{ref.reference}",
            scope=f"repository:{ref.repository}:pull",
            what=what,
            headers={"Accept": ACCEPT},
            ok=(200, 404),
        )
        resp.close()
        return resp.status == 200

    def delete_manifest(self, repository: str, digest: Digest, what: str) -> None:
        """DELETE the manifest ``digest`` (and so every tag naming it) from ``repository``."""
        resp = self.request(
            "DELETE",
            f"/v2/{repository}/manifests/{digest}",
            scope=f"repository:{repository}:delete",
            what=what,
            ok=(202, 200, 404),
        )
        resp.read(ERROR_LIMIT)

    def ping(self) -> None:
        """GET /v2/ with credentials: raises AuthError when they are refused."""
        self.request("GET", "/v2/", scope="", what="checking credentials").read(ERROR_LIMIT)

    def close(self) -> None:
        self.http.close()

    # --- manifests ---------------------------------------------------------------------------
    def get_manifest(self, ref: RegistryReference, what: str) -> tuple[Descriptor, bytes]:
        """The manifest or index ``ref`` names, its digest verified; (descriptor, exact bytes)."""
        for attempt in range(1, self.attempts + 1):
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
                raw = resp.read(DOCUMENT_LIMIT)
            except ConnectionDropped:
                if attempt == self.attempts:
                    raise
                continue
            return self._manifest_descriptor(ref, raw, content_type, header_digest, what), raw
        raise AssertionError("unreachable")  # pragma: no cover

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
        doc = _json(raw)
        if doc is None:
            raise RegistryError(f"registry {self.host}: {what}: manifest is not JSON (or nests too deeply)")
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
            raise RegistryError(f"registry {self.host}: {what}: unsupported manifest type {media[:100]!r}")
        return Descriptor(media, actual, len(raw))

    def has_blob(self, repository: str, desc: Descriptor, what: str) -> bool:
        """Whether ``repository`` holds the blob (with that size, when the registry says one)."""
        resp = self.request(
            "HEAD",
            f"/v2/{repository}/blobs/{desc.digest}",
            scope=f"repository:{repository}:pull",
            what=what,
            ok=(200, 404),
        )
        status = resp.status
        length = resp.content_length() if status == 200 else None
        resp.close()
        return status == 200 and (length is None or length == desc.size)

    @contextlib.contextmanager
    def open_blob(self, repository: str, desc: Descriptor, what: str) -> Iterator[Response]:
        resp = self.request(
            "GET",
            f"/v2/{repository}/blobs/{desc.digest}",
            scope=f"repository:{repository}:pull",
            what=what,
            size=desc.size,
        )
        try:
            length = resp.content_length()
            if length is not None and length != desc.size:
                raise DigestMismatch(
                    f"registry {self.host}: {what}: blob {desc.digest} is {length} bytes, "
                    f"its descriptor says {desc.size}"
                )
            yield resp
        finally:
            resp.close()
