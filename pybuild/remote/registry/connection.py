"""HTTP for the registry client, on urllib3: pooled connections, timeouts and a hard deadline.

Why urllib3 (and not httpx): it is synchronous and thread-safe, which suits a small pool of blob
threads; it keeps connections open across the requests of a pull or push; it imports in ~40 ms with
no dependencies (start-up time counts: CI runs pybuild on every commit); its errors form one
documented tree (``urllib3.exceptions.HTTPError``); and its connections expose their socket, which a
deadline needs: a per-read timeout never fires against a server that sends one byte a second, so a
timer shuts the socket down when a request's deadline passes, whatever the request is waiting for.

This module is the one boundary: every exception of urllib3, http.client, ssl and socket that a
request or a read raises becomes a RegistryError here. urllib3 is imported only when a registry is
used (``pybuild copy oci:a oci:b`` never loads it).
"""

from __future__ import annotations

import functools
import glob
import http.client
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ...errors import RegistryError

CHUNK = 1 << 20
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 60.0  # no byte at all for this long: the connection is dropped
DEADLINE = 120.0  # a whole request with no large body: headers and all of the answer
MIN_RATE = 128 << 10  # a blob transfer gets DEADLINE + size / MIN_RATE (a 4 GiB layer: ~9 h)
POOL_SIZE = 6  # connections kept per host: the blob threads plus one
DEADLINE_ENV = "PYBUILD_REGISTRY_DEADLINE"
CERTS_DIRS = ("/etc/containers/certs.d", "~/.config/containers/certs.d")


class ConnectionDropped(RegistryError):
    """The registry closed the connection, or went silent, before it answered (after any retries)."""


class DeadlineExceeded(RegistryError):
    """A request did not complete within its deadline."""


class InvalidResponse(RegistryError):
    """The registry answered something that is not valid HTTP."""


class TLSFailed(RegistryError):
    """The TLS handshake failed; ``certificate`` when it was the certificate that was refused
    (otherwise the server may not speak TLS at all)."""

    def __init__(self, message: str, *, certificate: bool, hints: list[str]) -> None:
        super().__init__(message, hints=hints)
        self.certificate = certificate


def deadline_for(size: int | None = None) -> float:
    """Seconds a request may take in all: ``$PYBUILD_REGISTRY_DEADLINE`` when set, else a fixed
    allowance plus the time to move ``size`` bytes at ``MIN_RATE``."""
    explicit = os.environ.get(DEADLINE_ENV)
    if explicit:
        try:
            value = float(explicit)
        except ValueError:
            raise RegistryError(f"{DEADLINE_ENV}={explicit!r} is not a number of seconds") from None
        if value > 0:
            return value
    return DEADLINE + (size or 0) / MIN_RATE


# --- TLS -------------------------------------------------------------------------------------------


def cert_dir_for(host: str, cert_dir: Path | None) -> Path | None:
    """``--cert-dir``, else containers' per-registry folder (certs.d/HOST[:PORT]) when there is one."""
    if cert_dir is not None:
        if not cert_dir.is_dir():
            raise RegistryError(f"cannot read certificates: {cert_dir} is not a directory")
        return cert_dir
    for base in CERTS_DIRS:
        folder = Path(os.path.expanduser(base)) / host
        if folder.is_dir():
            return folder
    return None


def ssl_context(verify: bool, cert_dir: Path | None) -> ssl.SSLContext:
    """The system's trust plus, from ``cert_dir``, CA files ``*.crt`` and a client pair
    ``NAME.cert``/``NAME.key`` (containers-certs.d(5)); no verification when ``verify`` is False."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_dir is None:
        return context
    try:
        for ca in sorted(glob.glob(str(cert_dir / "*.crt"))):
            context.load_verify_locations(cafile=ca)
        for cert in sorted(glob.glob(str(cert_dir / "*.cert"))):
            key = cert[: -len(".cert")] + ".key"
            if not os.path.exists(key):
                raise RegistryError(f"cannot use client certificate {cert}: {Path(key).name} is missing")
            context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise RegistryError(f"cannot read certificates in {cert_dir}: {_reason(exc)}") from None
    return context


# --- the deadline ----------------------------------------------------------------------------------


class _Watch:
    """One request's deadline: when it passes, the socket the request uses is shut down, which ends
    whatever read or write is blocked on it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.conn: Any = None
        self.expired = False
        self._lock = threading.Lock()
        self._stopped = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, conn: Any) -> None:
        with self._lock:
            self.conn = conn
        if self.expired:
            self._fire()

    def _fire(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self.expired = True
            sock = getattr(self.conn, "sock", None)
            if sock is not None:
                try:  # the plain socket's shutdown: safe beside a TLS read in another thread
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._timer.cancel()


_current = threading.local()


@functools.cache
def _pool_classes() -> dict[str, type]:
    """urllib3 pools whose connections report themselves to the request's deadline."""
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def watched(base: type) -> type:
        class Watched(base):  # type: ignore[misc]
            def request(self, *args: Any, **kwargs: Any) -> Any:
                watch = getattr(_current, "watch", None)
                if watch is not None:
                    watch.attach(self)
                return super().request(*args, **kwargs)

        return Watched

    class Pool(HTTPConnectionPool):
        ConnectionCls = watched(HTTPConnection)

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = watched(HTTPSConnection)

    return {"http": Pool, "https": TLSPool}


# --- errors ----------------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    if isinstance(exc, http.client.IncompleteRead):  # urllib3's counts bytes, http.client's keeps them
        partial = exc.partial if isinstance(exc.partial, int) else len(exc.partial)
        return f"the body ended after {partial} bytes" + (
            f", {exc.expected} more expected" if exc.expected else ""
        )
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _innermost(exc: BaseException) -> BaseException:
    """urllib3 wraps the error that happened: (MaxRetryError ->) ProtocolError -> the cause."""
    from urllib3.exceptions import MaxRetryError, ProtocolError

    seen = 0
    while seen < 5:
        seen += 1
        if isinstance(exc, MaxRetryError) and exc.reason is not None:
            exc = exc.reason
        elif isinstance(exc, ProtocolError) and len(exc.args) > 1 and isinstance(exc.args[1], BaseException):
            exc = exc.args[1]
        else:
            break
    return exc


def _bad_chunk_size(exc: BaseException) -> bool:
    """http.client reports a chunk size that is not hex as an IncompleteRead raised while handling
    the ValueError of parsing it: a broken body, not a dropped connection."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None or not isinstance(seen, http.client.IncompleteRead):
            return False
        if isinstance(seen.__context__, ValueError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def translate(exc: BaseException, host: str, what: str, watch: _Watch | None) -> RegistryError:
    """The RegistryError for anything urllib3, http.client, ssl or socket raised during a request."""
    from urllib3 import exceptions as u

    where = f"registry {host}: {what}"
    if watch is not None and watch.expired:
        return DeadlineExceeded(
            f"{where}: no complete answer within {watch.seconds:.0f}s",
            hints=[f"{DEADLINE_ENV}=SECONDS allows a request more time"],
        )
    inner = _innermost(exc)
    if isinstance(inner, u.NameResolutionError):
        return RegistryError(f"cannot reach registry {host}: its name does not resolve")
    if isinstance(inner, u.NewConnectionError):  # (a subclass of ConnectTimeoutError, in urllib3)
        cause = inner.__cause__ or inner.__context__
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(inner).lower():
            return RegistryError(f"cannot reach registry {host}: connection refused")
        return RegistryError(f"cannot reach registry {host}: {_reason(cause or inner)}")
    if isinstance(inner, u.ConnectTimeoutError):
        return RegistryError(f"cannot reach registry {host}: connection timed out")
    if isinstance(inner, ssl.SSLError | u.SSLError | ssl.CertificateError):
        cause = inner.__cause__ or inner.__context__ or inner
        certificate = isinstance(inner, ssl.CertificateError) or isinstance(cause, ssl.CertificateError)
        certificate = certificate or "certificate" in str(inner).lower()
        return TLSFailed(
            f"cannot reach registry {host}: TLS: {_reason(inner)}",
            certificate=certificate,
            hints=["pass --tls-verify=false for a registry with a self-signed certificate, or --cert-dir"],
        )
    if isinstance(inner, u.ReadTimeoutError | TimeoutError | socket.timeout):
        return ConnectionDropped(f"{where}: connection dropped (no data for {READ_TIMEOUT:.0f}s)")
    if isinstance(inner, u.InvalidChunkLength) or _bad_chunk_size(inner):  # (IncompleteReads too)
        return InvalidResponse(f"{where}: invalid HTTP answer: broken chunked encoding")
    if isinstance(
        inner,
        http.client.RemoteDisconnected
        | http.client.IncompleteRead
        | u.IncompleteRead
        | ConnectionResetError
        | ConnectionAbortedError
        | BrokenPipeError,
    ):
        return ConnectionDropped(f"{where}: connection dropped ({_reason(inner)})")
    if isinstance(inner, http.client.LineTooLong):
        return InvalidResponse(f"{where}: invalid HTTP answer: a line longer than 64 KiB")
    if isinstance(inner, http.client.BadStatusLine):
        return InvalidResponse(f"{where}: invalid HTTP answer: bad status line")
    if isinstance(inner, http.client.HTTPException):
        return InvalidResponse(f"{where}: invalid HTTP answer: {_reason(inner)}")
    if isinstance(inner, u.LocationValueError | u.LocationParseError):
        return RegistryError(f"{where}: invalid URL: {_reason(inner)}")
    if isinstance(inner, u.HTTPError):
        return InvalidResponse(f"{where}: invalid HTTP answer: {_reason(inner)}")
    if isinstance(inner, OSError):
        return ConnectionDropped(f"{where}: connection failed ({_reason(inner)})")
    return InvalidResponse(f"{where}: invalid HTTP answer: {_reason(inner)}")


def _errors() -> tuple[type[BaseException], ...]:
    """What a request or a read may raise that is the server's or the network's doing."""
    from urllib3.exceptions import HTTPError

    return (HTTPError, http.client.HTTPException, OSError, ValueError)


# --- requests and responses ------------------------------------------------------------------------


class Response:
    """An answer whose body is read at most once: ``read`` (small, limited) or ``chunks`` (a blob)."""

    def __init__(self, raw: Any, watch: _Watch, host: str, what: str) -> None:
        self._raw = raw
        self._watch = watch
        self._host = host
        self._what = what
        self._done = False
        self.status: int = raw.status
        self.headers = raw.headers

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None

    def content_length(self) -> int | None:
        value = self.header("Content-Length")
        if value is None:
            return None
        if not value.strip().isdigit():
            raise InvalidResponse(
                f"registry {self._host}: {self._what}: invalid Content-Length {value[:40]!r}"
            )
        return int(value)

    def read(self, limit: int) -> bytes:
        """The whole body, refused when larger than ``limit`` bytes."""
        try:
            length = self.content_length()
            if length is not None and length > limit:
                raise RegistryError(
                    f"registry {self._host}: {self._what}: answer of {length} bytes is larger than "
                    f"the limit of {limit}"
                )
            data = bytearray()
            for chunk in self.chunks(min(CHUNK, limit + 1)):
                data += chunk
                if len(data) > limit:
                    raise RegistryError(
                        f"registry {self._host}: {self._what}: answer is larger than the limit of "
                        f"{limit} bytes"
                    )
            return bytes(data)
        finally:
            self.close()

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The body, a chunk at a time; the deadline and every read error become RegistryError."""
        errors = _errors()
        while True:
            try:
                data = self._raw.read(size, decode_content=False)
            except errors as exc:
                self.close()
                raise translate(exc, self._host, self._what, self._watch) from None
            if self._watch.expired:
                self.close()
                raise translate(TimeoutError(), self._host, self._what, self._watch)
            if not data:
                self._done = True
                return
            yield data

    def close(self) -> None:
        """Give the connection back when the body was read to its end, else drop it."""
        self._watch.stop()
        try:
            if not self._done:
                self._raw.close()
            self._raw.release_conn()
        except Exception:
            pass


class HTTP:
    """The connections of one registry client: a pool per host, kept across its requests. The TLS
    contexts are made on the first https request (loading the system's CAs takes ~15 ms)."""

    def __init__(
        self, context: Callable[[], ssl.SSLContext], foreign_context: Callable[[], ssl.SSLContext]
    ) -> None:
        self._contexts = {False: context, True: foreign_context}
        self._managers: dict[tuple[bool, bool], Any] = {}
        self._lock = threading.Lock()

    def _manager(self, foreign: bool, https: bool) -> Any:
        """The pools for our registry, or (``foreign``) for redirect targets and token realms: no
        client certificate and none of this registry's extra CAs there."""
        with self._lock:
            manager = self._managers.get((foreign, https))
            if manager is None:
                import urllib3

                # --tls-verify=false is the user's choice: urllib3 would warn on stderr for each request
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
                manager = urllib3.PoolManager(
                    num_pools=8,
                    maxsize=POOL_SIZE,
                    block=False,
                    retries=False,
                    timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
                    blocksize=CHUNK,
                    ssl_context=self._contexts[foreign]() if https else None,
                )
                manager.pool_classes_by_scheme = _pool_classes()
                self._managers[(foreign, https)] = manager
            return manager

    def send(
        self,
        method: str,
        url: str,
        *,
        host: str,
        what: str,
        headers: dict[str, str],
        body: bytes | IO[bytes] | None,
        seconds: float,
        foreign: bool,
    ) -> Response:
        """One request (no redirects followed, no retries): its response, body unread."""
        manager = self._manager(foreign, url.lower().startswith("https:"))
        watch = _Watch(seconds)
        _current.watch = watch
        try:
            raw = manager.urlopen(
                method,
                url,
                body=body,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
            )
        except _errors() as exc:
            watch.stop()
            raise translate(exc, host, what, watch) from None
        finally:
            _current.watch = None
        return Response(raw, watch, host, what)

    def close(self) -> None:
        with self._lock:
            for manager in self._managers.values():
                manager.clear()
