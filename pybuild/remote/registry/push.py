"""Push: an image from a layout to a registry, blobs in parallel, each one only if needed.

For every blob the registry is asked first (HEAD); then a cross-repository mount is tried, from
``mount_from`` and from the repositories of the same registry where the blob-info cache saw it;
only then is it uploaded. Layers compressed on the way out (the store keeps them uncompressed) go
through the cache too: when the registry has, or can mount, the compressed blob the cache names,
the layer is neither compressed nor uploaded.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ...errors import RegistryError, UsageError
from ...layout import (
    BlobInfoCache,
    Descriptor,
    Digest,
    Index,
    Layout,
    Manifest,
    build_manifest,
    format_layer,
    load_image,
    mediatype,
)
from ..auth import Credentials
from ..recompress import cached, check_compression, compress, converts
from ..reference import RegistryReference
from .client import Registry, RegistryOptions
from .connection import CHUNK, ConnectionDropped, Response
from .pull import WORKERS, Progress, no_progress

CHUNKED_THRESHOLD = 64 << 20
MOUNT_TRIES = 3


@dataclass(frozen=True)
class Outbound:
    """Compress layers on the way: into ``compression``; with ``only_uncompressed``, only the plain
    tar ones (what a push does by default)."""

    compression: str
    only_uncompressed: bool = False


def _children(desc: Descriptor, raw: bytes, label: str) -> list[Descriptor]:
    if desc.media_type in mediatype.INDEXES:
        return list(Index.parse(raw, f"index {desc.digest} in {label}").manifests)
    manifest = Manifest.parse(raw, f"manifest {desc.digest} in {label}", lenient=True)
    return [manifest.config, *manifest.layers]


class _ProgressReader(io.RawIOBase):
    """A verified reader of a blob that reports progress as it is sent."""

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


class Pusher:
    """One push: the registry, the target repository, and what the cache knows."""

    def __init__(
        self,
        registry: Registry,
        ref: RegistryReference,
        progress: Progress,
        *,
        mount_from: str | None,
        cache: BlobInfoCache | None,
        chunk_size: int,
        chunked_threshold: int,
        workers: int,
    ) -> None:
        self.registry = registry
        self.ref = ref
        self.repository = ref.repository
        self.what = f"pushing {ref.short}"
        self.progress = progress
        self.mount_from = mount_from
        self.cache = cache
        self.chunk_size = chunk_size
        self.chunked_threshold = chunked_threshold
        self.workers = max(1, workers)
        self.scope = f"repository:{self.repository}:pull,push"
        self.location = f"docker://{registry.host}/{self.repository}"

    @classmethod
    def open(
        cls,
        ref: RegistryReference,
        options: RegistryOptions | None,
        progress: Progress | None,
        cache: BlobInfoCache | None,
        workers: int = WORKERS,
    ) -> Pusher:
        """A push to ``ref`` on a registry client of its own (the caller closes ``.registry``)."""
        return cls(
            (options or RegistryOptions()).registry(ref.registry),
            ref,
            progress or no_progress,
            mount_from=None,
            cache=cache,
            chunk_size=16 << 20,
            chunked_threshold=CHUNKED_THRESHOLD,
            workers=workers,
        )

    # --- is it there already? ----------------------------------------------------------------
    def _mount_sources(self, digest: Digest) -> list[str]:
        sources = [self.mount_from] if self.mount_from else []
        if self.cache is not None:
            prefix = f"docker://{self.registry.host}/"
            sources += [x[len(prefix) :] for x in self.cache.locations(digest) if x.startswith(prefix)]
        unique = dict.fromkeys(s for s in sources if s and s != self.repository)
        return list(unique)[:MOUNT_TRIES]

    def _mount(self, desc: Descriptor, source: str) -> Response | None:
        """Try a cross-repository mount: None when mounted, else the upload session it opened."""
        query = urllib.parse.urlencode({"mount": str(desc.digest), "from": source})
        resp = self.registry.request(
            "POST",
            f"/v2/{self.repository}/blobs/uploads/?{query}",
            scope=f"{self.scope} repository:{source}:pull",
            what=self.what,
            headers={"Content-Length": "0"},
            ok=(201, 202),
            retry=False,
        )
        resp.read(64 << 10)
        return None if resp.status == 201 else resp

    def present(self, desc: Descriptor) -> tuple[bool, Response | None]:
        """Whether the repository has ``desc`` (or now does, by a mount); else an upload session a
        refused mount opened, if any."""
        if self.registry.has_blob(self.repository, desc, self.what):
            return True, None
        session = None
        for source in self._mount_sources(desc.digest):
            session = self._mount(desc, source)
            if session is None:
                return True, None
        return False, session

    def _remember(self, desc: Descriptor) -> None:
        if self.cache is not None:
            self.cache.record_location(desc.digest, self.location)

    # --- uploads -----------------------------------------------------------------------------
    def upload(self, layout: Layout, desc: Descriptor) -> None:
        """Make sure the repository has ``desc`` (from ``layout``); a connection dropped mid-upload
        starts a new upload session, a limited number of times."""
        for attempt in range(1, self.registry.attempts + 1):
            try:
                self._upload_once(layout, desc)
                self._remember(desc)
                return
            except ConnectionDropped:
                if attempt == self.registry.attempts:
                    raise
                self.progress("restart", desc, 0)
                time.sleep(0.1 * attempt)
            except RegistryError:
                # another client pushing the same blob at the same moment: distribution's filesystem
                # driver can answer one of them "digest invalid" while the other's copy lands. What
                # counts is that the repository has the blob, which a HEAD says
                if not self.registry.has_blob(self.repository, desc, self.what):
                    raise
                self.progress("done", desc, desc.size)
                self._remember(desc)
                return

    def _upload_once(self, layout: Layout, desc: Descriptor) -> None:
        there, session = self.present(desc)
        if there:
            self.progress("skip", desc, desc.size)
            return
        self.progress("start", desc, 0)
        if session is None:
            session = self.registry.request(
                "POST",
                f"/v2/{self.repository}/blobs/uploads/",
                scope=self.scope,
                what=self.what,
                headers={"Content-Length": "0"},
                ok=(202,),
                retry=False,
            )
        location = self._location(session)

        def with_digest(url: str) -> str:
            return url + ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": str(desc.digest)})

        if desc.size < self.chunked_threshold:

            def body() -> IO[bytes]:
                return _ProgressReader(layout, desc, self.progress)  # type: ignore[return-value]

            self.registry.request(
                "PUT",
                with_digest(location),
                scope=self.scope,
                what=self.what,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
                body=body,
                ok=(201,),
                retry=False,
                size=desc.size,
            ).read(64 << 10)
        else:
            offset = 0
            with layout.blobs.open(desc.digest, desc.size) as reader:
                while chunk := reader.read(self.chunk_size):
                    end = offset + len(chunk) - 1
                    resp = self.registry.request(
                        "PATCH",
                        location,
                        scope=self.scope,
                        what=self.what,
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Length": str(len(chunk)),
                            "Content-Range": f"{offset}-{end}",
                        },
                        body=lambda chunk=chunk: chunk,  # type: ignore[misc]
                        ok=(202,),
                        retry=False,
                        size=len(chunk),
                    )
                    location = self._location(resp)
                    offset = end + 1
                    self.progress("advance", desc, len(chunk))
            self.registry.request(
                "PUT",
                with_digest(location),
                scope=self.scope,
                what=self.what,
                headers={"Content-Length": "0"},
                ok=(201,),
                retry=False,
            ).read(64 << 10)
        self.progress("done", desc, desc.size)

    def _location(self, resp: Response) -> str:
        location = resp.header("Location")
        resp.read(64 << 10)
        if not location:
            raise RegistryError(
                f"registry {self.registry.host}: {self.what}: upload answered without a Location"
            )
        target = urllib.parse.urljoin(self.registry.base + "/", location)
        if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
            raise RegistryError(
                f"registry {self.registry.host}: {self.what}: bad upload Location {location[:100]!r}"
            )
        return target

    def put_manifest(self, raw: bytes, media_type: str, digest: Digest, top: bool) -> str | None:
        """PUT the manifest (by tag when ``top``, else by digest); the registry's ``OCI-Subject``
        answer, which says it processed the manifest's subject (the referrers API)."""
        target = (self.ref.tag or "latest") if top and self.ref.digest is None else str(digest)
        resp = self.registry.request(
            "PUT",
            f"/v2/{self.repository}/manifests/{target}",
            scope=self.scope,
            what=self.what,
            headers={"Content-Type": media_type, "Content-Length": str(len(raw))},
            body=lambda: raw,
            ok=(201,),
        )
        answered = resp.header("Docker-Content-Digest")
        subject = resp.header("OCI-Subject")
        resp.read(64 << 10)
        if answered and answered != str(digest) and answered.startswith(f"{digest.algorithm}:"):
            raise RegistryError(
                f"registry {self.registry.host}: {self.what}: "
                f"registry stored the manifest as {answered[:100]}"
            )
        return subject

    def parallel(self, jobs: list[tuple[Layout, Descriptor]]) -> None:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(self.upload, layout, desc) for layout, desc in jobs]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error

    # --- images ------------------------------------------------------------------------------
    def push_tree(
        self, layout: Layout, desc: Descriptor, top: bool = True, raw: bytes | None = None
    ) -> str | None:
        """``desc`` (an index or a manifest) and everything below it, as it is (or, for the top,
        as ``raw`` says: a referrer whose subject changed); its ``OCI-Subject`` answer."""
        if raw is None:
            raw = layout.blobs.read(desc.digest, desc.size)
        children = _children(desc, raw, layout.label)
        if desc.media_type in mediatype.INDEXES:
            for child in children:
                if child.media_type in mediatype.MANIFESTS | mediatype.INDEXES:
                    self.push_tree(layout, child, top=False)
        else:
            self.parallel([(layout, child) for child in children])
        return self.put_manifest(raw, desc.media_type, Digest.of_bytes(raw, desc.digest.algorithm), top)

    def settle_layer(
        self,
        layout: Layout,
        layer: Descriptor,
        diff_id: Digest,
        outbound: Outbound,
        staging: Callable[[], Layout],
        docker: bool,
    ) -> Descriptor:
        """Make sure the repository has ``layer`` (from ``layout``) as ``outbound`` says: as it is, or
        compressed once (the blob-info cache names the compressed blob, which the registry may
        have or mount; else it is compressed into the layout ``staging()`` gives, made only when
        needed, and uploaded). The blob pushed, named in ``docker``'s format."""
        if not converts(layer, outbound.compression, outbound.only_uncompressed):
            self.upload(layout, layer)
            return format_layer(layer, docker)
        candidate = cached(self.cache, layer, diff_id, outbound.compression, docker)
        if candidate is not None:
            there, session = self.present(candidate)
            if session is not None:
                session.close()
            if there:
                self.progress("skip", candidate, candidate.size)
                self._remember(candidate)
                return candidate
        into = staging()
        out, writer = compress(layout, layer, diff_id, outbound.compression, docker, into, self.cache)
        writer.commit()
        self.upload(into, out)
        return out

    def push_converted(
        self,
        layout: Layout,
        desc: Descriptor,
        outbound: Outbound,
        staging: Callable[[], Layout],
        *,
        docker: bool | None = None,
        top: bool = True,
    ) -> Descriptor:
        """The manifest ``desc`` with its layers compressed on the way (through the cache, into the
        layout ``staging()`` makes, see :func:`staging_at`): the manifest pushed, the same bytes
        ``recompress_image`` writes into a layout. ``docker``
        writes it in that format (Docker schema 2, or OCI) instead of the image's own; ``top``
        puts it by tag, else by digest (an image of an index)."""
        image = load_image(layout, desc)
        docker = image.is_docker if docker is None else docker
        check_compression(image, outbound.compression, layout.label)
        if docker and outbound.compression == "zstd":
            raise UsageError(f"{layout.label}: Docker-format images have gzip or plain tar layers, not zstd")

        def settle(layer: Descriptor, diff_id: Digest) -> Descriptor:
            return self.settle_layer(layout, layer, diff_id, outbound, staging, docker)

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [
                pool.submit(settle, layer, diff_id)
                for layer, diff_id in zip(image.layers, image.config.diff_ids, strict=True)
            ]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        layers = [f.result() for f in futures]
        config = image.manifest.config
        self.upload(layout, config)
        manifest = build_manifest(
            config.digest, config.size, layers, docker=docker, annotations=image.manifest.annotations or None
        )
        raw = manifest.to_bytes()
        pushed = Descriptor(manifest.media_type, Digest.of_bytes(raw), len(raw))
        self.put_manifest(raw, pushed.media_type, pushed.digest, top=top)
        return pushed


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
    options: RegistryOptions | None = None,
    cache: BlobInfoCache | None = None,
) -> Digest:
    """Push the manifest or index ``desc`` from ``layout`` to ``ref`` (by tag); its digest.

    Blobs the registry has are skipped; ``mount_from`` (a repository on the same registry) and the
    cache's known repositories are tried as cross-repository mounts first; blobs of
    ``chunked_threshold`` bytes or more go up in PATCH chunks of ``chunk_size``.
    """
    own = registry is None
    if registry is None:
        registry = (options or RegistryOptions(creds, tls_verify)).registry(ref.registry)
    pusher = Pusher(
        registry,
        ref,
        progress or no_progress,
        mount_from=mount_from,
        cache=cache,
        chunk_size=chunk_size,
        chunked_threshold=chunked_threshold,
        workers=workers,
    )
    try:
        pusher.push_tree(layout, desc)
    finally:
        if own:
            registry.close()
    return desc.digest


def push_converted(
    layout: Layout,
    desc: Descriptor,
    ref: RegistryReference,
    outbound: Outbound,
    staging: Callable[[], Layout],
    *,
    options: RegistryOptions | None = None,
    progress: Progress | None = None,
    cache: BlobInfoCache | None = None,
    workers: int = WORKERS,
) -> Descriptor:
    """Push the manifest ``desc`` with its layers compressed as ``outbound`` says (compressed blobs
    made on the way go through ``staging()``); returns the manifest pushed."""
    pusher = Pusher.open(ref, options, progress, cache, workers)
    try:
        return pusher.push_converted(layout, desc, outbound, staging)
    finally:
        pusher.registry.close()


def staging_at(root: Path) -> Callable[[], Layout]:
    """The staging layout for layers compressed on the way, made at ``root`` when the first one is
    (by any thread): a push whose compressed layers the registry has already writes nothing."""
    made: list[Layout] = []
    lock = threading.Lock()

    def staging() -> Layout:
        with lock:
            if not made:
                made.append(Layout.create(root))
            return made[0]

    return staging
