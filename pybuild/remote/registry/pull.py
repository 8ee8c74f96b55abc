"""Pull: a registry image into a layout, validated and verified before anything is named.

The manifest is checked first (size, depth, schema, media types), then the config (a valid image
config with one diff_id per layer), and only then are the layers fetched, in parallel. Every blob is
written to the layout's temp dir and verified (size and digest); they all appear in ``blobs/``, and
the manifest and its tag in ``index.json``, only once everything is there. A failed pull leaves the
layout as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ...errors import DigestMismatch, ImageNotFound, PybuildError, RegistryError
from ...layout import (
    BlobInfoCache,
    BlobWriter,
    Descriptor,
    Index,
    Layout,
    Platform,
    StagedBlobs,
    host_platform,
    mediatype,
)
from ...layout.document import DOCUMENT_LIMIT
from ...layout.image import platform_matches
from ..auth import Credentials
from ..reference import RegistryReference
from .client import Registry, RegistryOptions
from .connection import ConnectionDropped
from .validate import check_config, parse_manifest

WORKERS = 4

#: progress(event, descriptor, n), called from worker threads: event is "start", "advance" (n bytes
#: more; negative when a dropped download restarts), "restart" (a dropped upload starts over: reset
#: the blob's bar), "skip" (already there; n = size) or "done".
Progress = Callable[[str, Descriptor, int], None]


def no_progress(event: str, desc: Descriptor, n: int) -> None:
    pass


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
        raise ImageNotFound(f"registry {host}: {what}: no image for {want} (it has: {offered[:300]})")
    exact = [m for m in found if m.platform is not None and m.platform.variant == want.variant]
    return (exact or found)[0]


def resolve_manifest(
    registry: Registry, ref: RegistryReference, platform: Platform | None, what: str
) -> tuple[Descriptor, bytes]:
    """The image manifest ``ref`` names (through an index, for ``platform``): descriptor and bytes."""
    desc, raw = registry.get_manifest(ref, what)
    if desc.media_type in mediatype.INDEXES:
        try:
            index = Index.parse(raw, f"registry {registry.host}: {what}: index {desc.digest}")
        except PybuildError as exc:
            raise RegistryError(str(exc)) from None
        chosen = pick_manifest(index, platform, registry.host, what)
        desc, raw = registry.get_manifest(ref.with_digest(chosen.digest), what)
        if desc.media_type not in mediatype.MANIFESTS:
            raise RegistryError(f"registry {registry.host}: {what}: {chosen.digest} is not an image manifest")
        desc = Descriptor(desc.media_type, desc.digest, desc.size, platform=chosen.platform)
    return desc, raw


def download(
    registry: Registry, layout: Layout, repository: str, desc: Descriptor, what: str, progress: Progress
) -> BlobWriter:
    """Stream one blob into ``layout``'s temp dir, verified and sealed (the caller commits or aborts
    it); a dropped connection starts it over, a limited number of times."""
    where = f"registry {registry.host}: {what}"
    progress("start", desc, 0)
    for attempt in range(1, registry.attempts + 1):
        done = 0
        writer = layout.blobs.writer(desc.digest.algorithm, expected=desc.digest)
        try:
            with registry.open_blob(repository, desc, what) as resp:
                for chunk in resp.chunks():
                    done += len(chunk)
                    if done > desc.size:
                        raise DigestMismatch(f"{where}: blob {desc.digest} is larger than {desc.size} bytes")
                    writer.write(chunk)
                    progress("advance", desc, len(chunk))
            if done != desc.size:
                raise ConnectionDropped(f"{where}: got {done} of {desc.size} bytes")
            writer.seal()
        except ConnectionDropped as exc:
            writer.abort()
            progress("advance", desc, -done)
            if attempt == registry.attempts:
                detail = str(exc).removeprefix(f"{where}: ")
                raise ConnectionDropped(f"{where}: blob {desc.digest}: {detail}") from None
            continue
        except DigestMismatch as exc:
            writer.abort()
            message = str(exc)
            raise DigestMismatch(message if message.startswith(where) else f"{where}: {message}") from None
        except BaseException:
            writer.abort()
            raise
        progress("done", desc, desc.size)
        return writer
    raise AssertionError("unreachable")  # pragma: no cover


def _config_bytes(
    registry: Registry,
    layout: Layout,
    repository: str,
    desc: Descriptor,
    what: str,
    progress: Progress,
    staged: StagedBlobs,
) -> bytes:
    if layout.blobs.exists(desc.digest):
        progress("skip", desc, desc.size)
        return layout.blobs.read(desc.digest, desc.size, limit=DOCUMENT_LIMIT)
    writer = staged.add(download(registry, layout, repository, desc, what, progress))
    return writer.read_sealed(DOCUMENT_LIMIT)


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
    options: RegistryOptions | None = None,
    cache: BlobInfoCache | None = None,
) -> Descriptor:
    """Pull the image ``ref`` names into ``layout`` (the manifest for ``platform`` from an index).

    Validated before a layer is fetched; blobs stream in parallel, verified; those present are
    skipped. The blobs, the manifest and ``tag`` appear only once everything is there: a failure
    leaves ``layout`` as it was. Returns the manifest's descriptor.
    """
    progress = progress or no_progress
    own = registry is None
    if registry is None:
        registry = (options or RegistryOptions(creds, tls_verify)).registry(ref.registry)
    try:
        return _pull(registry, ref, layout, tag, platform, progress, workers, cache)
    finally:
        if own:
            registry.close()


def _pull(
    registry: Registry,
    ref: RegistryReference,
    layout: Layout,
    tag: str | None,
    platform: Platform | None,
    progress: Progress,
    workers: int,
    cache: BlobInfoCache | None,
) -> Descriptor:
    what = f"pulling {ref.short}"
    where = f"registry {registry.host}: {what}"
    desc, raw = resolve_manifest(registry, ref, platform, what)
    manifest = parse_manifest(raw, desc, where)
    with layout.writing(), StagedBlobs() as staged:  # gc waits: what is skipped as present stays
        config_raw = _config_bytes(registry, layout, ref.repository, manifest.config, what, progress, staged)
        check_config(config_raw, manifest, where)
        wanted: dict[str, Descriptor] = {}
        for layer in manifest.layers:
            if layer.digest == manifest.config.digest or str(layer.digest) in wanted:
                continue
            if layout.blobs.exists(layer.digest):
                progress("skip", layer, layer.size)
                continue
            wanted[str(layer.digest)] = layer
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [
                pool.submit(download, registry, layout, ref.repository, layer, what, progress)
                for layer in wanted.values()
            ]
            errors = []
            for future in futures:
                error = future.exception()
                if error is None:
                    staged.add(future.result())
                else:
                    errors.append(error)
        if errors:
            raise errors[0]
        staged.commit()
        layout.blobs.put(raw, desc.digest.algorithm)
        if tag is not None:
            layout.set_tag(tag, desc)
    if cache is not None:
        location = f"docker://{registry.host}/{ref.repository}"
        for blob in [manifest.config, *manifest.layers]:
            cache.record_location(blob.digest, location)
    return desc
