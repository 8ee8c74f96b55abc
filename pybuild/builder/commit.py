"""The commit: the final stage's config and layers become an image in the store (config, manifest,
index.json, tags), and in each oci: target named with -t (uncompressed layers gzipped there); with
--sbom or --provenance, their attestations are attached to the manifest in each place (see
attestations)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..diff import write_layer
from ..errors import warn
from ..layout import (
    ConfigChanges,
    Descriptor,
    Digest,
    ImageConfig,
    Layout,
    commit_image,
    copy_blobs,
    load_image,
    mediatype,
    parse_reference,
)
from ..layout.imagestore import UNTAGGED
from .attestations import Attestation, make_attestations
from .images import format_media_type
from .state import StageState, now
from .stepcontext import StepContext


@dataclass
class BuildResult:
    descriptor: Descriptor
    image_id: str
    tags: list[str]
    warnings: list[str]
    # --sbom, --provenance: each document attached, in the store and in each oci: target
    attestations: list[Attestation] = field(default_factory=list)


def commit(ctx: StepContext, state: StageState, warnings: list[str]) -> BuildResult:
    """Write the final stage's image: config, manifest, tags in the store and oci: targets."""
    config = state.config
    runtime = state.runtime
    ConfigChanges(labels=ctx.options.labels).apply(config)  # --label
    if not ctx.docker:
        for field_name, instruction in (
            ("Healthcheck", "HEALTHCHECK"),
            ("OnBuild", "ONBUILD"),
            ("Shell", "SHELL"),
        ):
            if runtime.pop(field_name, None) is not None:
                warn(
                    f"{instruction} is not part of the OCI image format and is left out: "
                    "build with --format docker to keep it"
                )
    if not state.layers:
        _empty_layer(ctx, state)
    history = config.get("history") or []
    config["created"] = history[-1]["created"] if history else now(ctx.epoch)
    if not config.get("config"):
        config["config"] = {}
    for key in ("container", "container_config", "docker_version", "parent", "id"):
        config.pop(key, None)
    image_config = ImageConfig.new(config)
    layers = [format_media_type(d, ctx.docker) for d, _ in state.layers]
    tags = []
    attached: list[Attestation] = []
    with ctx.store.writing():
        desc = commit_image(
            ctx.store,
            image_config,
            layers,
            docker=ctx.docker,
            annotations=(dict(ctx.options.annotations) or None) if not ctx.docker else None,
        )
        plain = Descriptor(desc.media_type, desc.digest, desc.size)
        attestations = make_attestations(ctx, plain)  # made before any tag: a failure tags nothing
        if attestations is not None:
            attached += attestations.attach(ctx.store, plain)
        for tag in ctx.options.tags:
            ref = parse_reference(tag)
            if ref.transport != "oci":
                ctx.store.set_tag(ref.name, plain)
                tags.append(ref.name)
        if not ctx.options.tags or all(parse_reference(t).transport == "oci" for t in ctx.options.tags):
            ctx.store.set_tag(f"{UNTAGGED}:{plain.digest.encoded[:12]}", plain)
    for tag in ctx.options.tags:
        ref = parse_reference(tag)
        if ref.transport == "oci":
            assert ref.path is not None
            layout = Layout.create(ref.path, label=f"oci:{ref.path}")
            with layout.writing():
                written = _to_layout(ctx, layout, plain)
                if attestations is not None:  # they name the manifest written there
                    attached += attestations.attach(layout, written, ref.name)
                layout.set_tag(ref.name, written)
            tags.append(tag)
    image_id = desc_config_id(ctx.store, plain)
    return BuildResult(plain, image_id, tags, warnings, attached)


def _to_layout(ctx: StepContext, layout: Layout, desc: Descriptor) -> Descriptor:
    """Put the built image into an OCI layout: its blobs as they are, or, when no --compression
    was asked for, with the store's uncompressed layers gzipped (as buildah and skopeo write an
    OCI layout). Returns the descriptor to tag there."""
    from ..layout import BlobInfoCache
    from ..remote.recompress import has_uncompressed_layers, recompress_image

    if ctx.options.compression is None and has_uncompressed_layers(ctx.store, desc):
        # the store's blob-info cache: a layer gzipped before (a rebuild) is not gzipped again
        cache = BlobInfoCache(ctx.store.root)
        new = recompress_image(ctx.store, desc, layout, "gzip", only_uncompressed=True, cache=cache)
        return Descriptor(new.media_type, new.digest, new.size)
    copy_blobs(ctx.store, layout, desc)
    return desc


def _empty_layer(ctx: StepContext, state: StageState) -> None:
    """An image with no files (FROM scratch and config steps): buildah commits it with no layer,
    but an OCI manifest needs at least one (the image-spec schema's minItems), so it gets one
    empty layer."""
    media = mediatype.layer_media_type(ctx.compression, docker=ctx.docker)
    with ctx.store.blobs.writer() as writer:
        stats = write_layer([], ctx.scratch, writer, compression=ctx.compression, source_date_epoch=ctx.epoch)
    assert writer.digest is not None
    diff_id = Digest.parse(str(stats.diff_id))
    state.layers.append((Descriptor(media, Digest.parse(str(writer.digest)), writer.size), diff_id))
    state.config["rootfs"]["diff_ids"].append(str(diff_id))
    history = state.config.setdefault("history", [])
    created = history[-1]["created"] if history else now(ctx.epoch)
    history.append({"created": created, "created_by": "/bin/sh -c #(nop) FROM scratch"})


def desc_config_id(layout: Layout, desc: Descriptor) -> str:
    """The image ID: the hex of the config's digest, as buildah prints it."""
    return load_image(layout, desc).manifest.config.digest.encoded
