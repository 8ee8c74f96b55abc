"""The images a build starts from or reads: FROM's base image (in the store, pulled, or an OCI
layout), and the layers of an earlier stage or an image that COPY --from and RUN --mount from= read."""

from __future__ import annotations

from ..errors import ContainerfileError, ImageNotFound, PybuildError, RegistryError
from ..layout import (
    Descriptor,
    Layout,
    Platform,
    copy_blobs,
    format_layer,
    load_image,
    mediatype,
    parse_platform,
    parse_reference,
    read_index,
)
from ..layout.image import platform_matches
from .containerfile import Instruction
from .state import Layers, platform_text
from .stepcontext import StepContext

# the layer's descriptor with the media type of the build's format (same bytes)
format_media_type = format_layer


def base_image(
    ctx: StepContext, base: str, inst: Instruction, platform: str | None, what: str | None = None
) -> tuple[Layout, Descriptor]:
    """Find (or pull) the base image: oci:DIR[:TAG], docker://..., or a name in the store.
    ``what`` starts the error messages (default: FROM BASE). The build's provenance records it."""
    layout, desc = _find_image(ctx, base, inst, platform, what)
    ctx.facts.used_image(base, desc.digest, platform or platform_text(ctx.platform))
    return layout, desc


def _find_image(
    ctx: StepContext, base: str, inst: Instruction, platform: str | None, what: str | None
) -> tuple[Layout, Descriptor]:
    what = what or f"FROM {base}"
    from ..remote import copy_image

    try:
        if base.startswith("oci:"):
            ref = parse_reference(base)
            assert ref.path is not None
            layout = Layout.open(ref.path, label=f"oci:{ref.path}")
            return layout, layout.resolve(ref.name)
        name = base.removeprefix("docker://")
        wanted = parse_platform(platform) if platform else None
        held = None  # what the name is in the store: another platform's image
        try:
            _, held = ctx.store.lookup(name)
            if ctx.options.pull != "always" and (wanted is None or offers(ctx.store, held, wanted)):
                return ctx.store, held
        except ImageNotFound:
            if ctx.options.pull == "never":
                raise ImageNotFound(
                    f"{name} is not in {ctx.store.label} and --pull never forbids pulling it"
                ) from None
        if ctx.options.pull == "never":
            assert held is not None
            return ctx.store, held  # (FROM warns that its platform is not the one asked for)
        ctx.reporter.info(f"pulling {name}" + (f" for {platform}" if platform else ""))
        if wanted is not None and held is not None:
            # the name stays what it is (one build of a platform list pulls each platform's image
            # beside it): this platform's image is kept, untagged, by the build's writers' lock
            from ..remote import parse_registry_reference, pull

            remote = parse_registry_reference(f"docker://{name}")
            return ctx.store, pull(remote, ctx.store, None, platform=wanted, options=ctx.options.registry)
        desc = copy_image(
            f"docker://{name}",
            str(parse_reference(name).name),
            store=ctx.store,
            platform=wanted,
            src_options=ctx.options.registry,
        )
        return ctx.store, desc
    except RegistryError as exc:
        raise ContainerfileError(
            f"{what}: {exc}",
            file=inst.file,
            line=inst.line,
            hints=[
                *exc.hints,
                (
                    "without a network, put the image in the store first (pybuild copy or pull) "
                    "or name an OCI layout: FROM oci:DIR:TAG"
                ),
            ],
        ) from None
    except PybuildError as exc:
        raise inst.error(f"{what}: {exc}") from None


def offers(layout: Layout, desc: Descriptor, wanted: Platform) -> bool:
    """Whether the image ``desc`` is for ``wanted``, or the index ``desc`` has an image for it."""
    if desc.media_type in mediatype.INDEXES:
        return any(platform_matches(wanted, m.platform) for m in read_index(layout, desc).manifests)
    return platform_matches(wanted, load_image(layout, desc).config.platform)


def source_layers(ctx: StepContext, inst: Instruction, ref: str) -> Layers:
    """The layers (bottom first, blobs in the store) of an earlier stage, by name or index, or of
    an image (in the store, pulled, or oci:DIR:TAG): COPY --from and RUN --mount from=."""
    the_stage = None
    for idx, result in ctx.results.items():
        if result.stage.name == ref.lower() or (ref.isdigit() and int(ref) == idx):
            the_stage = result
    if the_stage is not None:
        return list(the_stage.layers)
    what = f"{'RUN --mount from' if inst.keyword == 'run' else inst.keyword.upper() + ' --from'}={ref}"
    for stage in ctx.stages:  # this stage or a later one: BuildKit's circular dependency
        if stage.name == ref.lower() or (ref.isdigit() and int(ref) == stage.index):
            raise inst.error(
                f"{what}: names stage {stage.label()}, which is not built before this one "
                "(a stage can use only earlier stages)"
            )
    # an image's platform is the one the build is for (--platform), as BuildKit picks it
    layout, desc = base_image(ctx, ref, inst, ctx.options.platform, what)
    image = load_image(layout, desc, parse_platform(ctx.options.platform) if ctx.options.platform else None)
    if layout.root != ctx.store.root:
        with ctx.store.writing():
            copy_blobs(layout, ctx.store, image.descriptor)
    return list(zip(image.layers, image.config.diff_ids, strict=True))
