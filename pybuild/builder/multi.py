"""The build a command asks for: one image, or one for each platform of a ``--platform`` list (or
of every platform the base images offer: ``--all-platforms``), gathered in an index.

The stages of every platform are scheduled together (``schedule``): those that could run at the
same time do, up to ``--jobs``, each line of their output prefixed with its platform and stage. A
stage every platform builds the same way (``FROM --platform=$BUILDPLATFORM``, reading none of the
target's ARGs, see ``platforms.Sharing``) is built once. Each image is committed as a build of one
platform commits it; the index lists them with the platform each config names, and is what ``-t``
names (in the store, or an ``oci:`` layout with the layers gzipped there). ``--manifest NAME``
adds the images to the manifest list NAME in the store, made if missing, replacing the images it
had for the same platforms.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

from ..errors import ImageNotFound, PybuildError, collect_warnings, warn
from ..layout import (
    BlobInfoCache,
    Descriptor,
    ImageStore,
    Index,
    Layout,
    Platform,
    add_to_list,
    find_list,
    list_entry,
    mediatype,
    parse_reference,
)
from ..layout.imagestore import UNTAGGED
from ..run import isolation, keep_out, overlay_mode
from .commit import BuildResult
from .containerfile import Instruction, Stage
from .executor import Builder
from .options import BuildOptions
from .platforms import Sharing, base_offers, common_platforms, inspected_bases
from .schedule import Unit, is_chain, run_units
from .stages import dependencies
from .state import StageState
from .stepcontext import Reporter, StepContext


@dataclass
class IndexResult(BuildResult):
    """A build of several platforms: ``descriptor`` is the index, ``image_id`` its digest's hex (as
    podman shows a manifest list), ``images`` each platform's own result."""

    images: list[BuildResult] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)  # each image's, as --platform named it


def build(store: ImageStore, options: BuildOptions, reporter: Reporter | None = None) -> BuildResult:
    """Build the Containerfile in ``options`` into ``store``; tags, oci: targets and the --manifest
    list are written too. Warnings go to :func:`pybuild.errors.warn` as they come and are listed in
    the result."""
    reporter = reporter or Reporter()
    first = Builder(store, options, reporter)
    keep_out(store.root, first.ctx.context)  # in-place mode never touches them
    # the whole build writes blobs that only its final commit references: hold the writers' lock
    # so `pybuild gc` waits instead of sweeping a step's layer in between (workers share it)
    if options.manifest is not None:
        find_list(store, options.manifest)  # a name of an image's is refused before anything is built
    with store.writing(), isolation(options.isolation), collect_warnings() as warnings:
        text = first.read_containerfile()
        platforms = list(options.platforms)
        if options.all_platforms:
            first.prepare(text)
            platforms = _offered(first)
        builders = _builders(store, options, reporter, first, platforms)
        for builder in builders:
            builder.prepare(text)
            builder.ctx.cache = first.ctx.cache  # one set of shared caches (keys name the platform)
        assert builders[0].plan is not None
        for w in builders[0].plan.warnings:
            warn(w)

        def attempt() -> BuildResult:
            _run(builders, options)
            builders[0].warn_unused(set().union(*(b.ctx.used_args for b in builders)))
            if len(builders) == 1:
                result = builders[0].finish(warnings)
                if options.manifest is not None:
                    add_to_list(store, options.manifest, [result.descriptor], same_platform=True)
                return result
            return _commit_index(store, options, builders, warnings)

        # a build starts over when a shared cache's entry lost its layer; the exports' warnings
        # reach ``warnings`` through the channel
        return first.ctx.cache.run(attempt)[0]


def _builders(
    store: ImageStore, options: BuildOptions, reporter: Reporter, first: Builder, platforms: list[str]
) -> list[Builder]:
    if not platforms or platforms == [options.platform]:
        return [first]
    several = len(platforms) > 1
    return [
        Builder(
            store,
            dataclasses.replace(
                options, platform=p, all_platforms=False, manifest=None, tags=() if several else options.tags
            ),
            reporter,
        )
        for p in platforms
    ]


def _offered(builder: Builder) -> list[str]:
    """--all-platforms: the platforms every base image offers."""
    assert builder.plan is not None
    offers = []
    for stage, base in inspected_bases(builder.plan, builder.stages, builder.scope):
        offers.append(_base_platforms(builder.ctx, base, stage.from_instruction))
    return common_platforms(offers)


def _base_platforms(ctx: StepContext, base: str, inst: Instruction) -> tuple[str, list[Platform]]:
    """The platforms of FROM's image: in an oci: layout, the store, or its registry (not pulled)."""
    from ..remote import parse_registry_reference
    from ..remote.indexes import remote_platforms

    try:
        if base.startswith("oci:"):
            ref = parse_reference(base)
            assert ref.path is not None
            layout = Layout.open(ref.path, label=f"oci:{ref.path}")
            return base_offers(layout, layout.resolve(ref.name), base)
        name = base.removeprefix("docker://")
        if ctx.options.pull != "always":
            try:
                return base_offers(ctx.store, ctx.store.lookup(name)[1], base)
            except ImageNotFound:
                if ctx.options.pull == "never":
                    raise ImageNotFound(
                        f"{name} is not in {ctx.store.label} and --pull never forbids looking it up"
                    ) from None
        return base, remote_platforms(parse_registry_reference(f"docker://{name}"), ctx.options.registry)
    except PybuildError as exc:
        raise inst.error(f"FROM {base}: {exc}") from None


def _stage_result(builder: Builder, stage: Stage) -> tuple[StageState, set[str]]:
    """Build ``stage``: what it made and the build args it read (from a worker, sent back)."""
    return builder.build_stage(stage), set(builder.ctx.used_args)


def _record(builders: list[Builder], index: int, result: tuple[StageState, set[str]]) -> None:
    state, used = result
    for builder in builders:
        builder.ctx.results[index] = state
        builder.ctx.used_args |= used


def _run(builders: list[Builder], options: BuildOptions) -> None:
    """Build every stage of every platform, stages that every platform shares once."""
    first = builders[0]
    assert first.plan is not None
    shared = Sharing(first.plan, [(b.scope, b.ctx.automatic, b.stages) for b in builders]).shared
    stage_labels = len(first.stages) > 1
    units = []
    for number, builder in enumerate(builders):
        for stage in builder.stages:
            common = stage.index in shared
            if common and number > 0:
                continue
            key: Any = ("*", stage.index) if common else (number, stage.index)
            deps = [
                ("*", d) if d in shared else (number, d)
                for d in dict.fromkeys(dependencies(first.plan, stage, builder.scope))
            ]
            parts = [builder.ctx.options.platform] if len(builders) > 1 and not common else []
            if stage_labels:
                parts.append(stage.label())
            units.append(
                Unit(
                    key,
                    "".join(f"[{p}] " for p in parts),
                    deps,
                    functools.partial(_stage_result, builder, stage),
                    functools.partial(_record, builders if common else [builder], stage.index),
                )
            )
    if first.ctx.cache.shared:  # its look-ups and export threads live in this process
        for unit in units:
            unit.done(unit.run())
        return
    if not is_chain(units):
        try:  # probed once here, not in every worker
            mode = overlay_mode(None, first.ctx.scratch)
        except PybuildError:
            mode = None
        if mode == "inplace":  # one `/`: one step at a time, in this process
            for unit in units:
                unit.done(unit.run())
            return
    run_units(units, options.workers)


def _commit_index(
    store: ImageStore, options: BuildOptions, builders: list[Builder], warnings: list[str]
) -> IndexResult:
    """Commit each platform's image, then the index of them; name it as -t says."""
    results = []
    for builder in builders:
        assert builder.target is not None
        target = builder.target.index
        builder.ctx.results[target] = copy.deepcopy(builder.ctx.results[target])  # (a shared stage's)
        results.append(builder.finish(warnings))
    images = [r.descriptor for r in results]
    media = mediatype.DOCKER_MANIFEST_LIST if options.docker else mediatype.OCI_INDEX
    tags: list[str] = []
    with store.writing():
        index = Index.build([list_entry(store, d) for d in images], media_type=media)
        digest, size = store.blobs.put(index.to_bytes())
        desc = Descriptor(media, digest, size)
        store_tags = [parse_reference(t).name for t in options.tags if parse_reference(t).transport != "oci"]
        for tag in store_tags:
            store.set_tag(tag, desc)
            tags.append(tag)
        if not store_tags:
            store.set_tag(f"{UNTAGGED}:{digest.encoded[:12]}", desc)
        if options.manifest is not None:
            add_to_list(store, options.manifest, images, same_platform=True)
    for tag in options.tags:
        ref = parse_reference(tag)
        if ref.transport == "oci":
            from ..remote.indexes import copy_index

            assert ref.path is not None
            layout = Layout.create(ref.path, label=f"oci:{ref.path}")
            _, moved = copy_index(store, desc, layout, ref.name, cache=BlobInfoCache(store.root))
            if options.sbom or options.provenance:  # each image's attestations go along (their
                # subject, and the provenance statement's, name the manifest written there)
                from ..remote.referrers import LayoutDestination, carry_referrers

                carry_referrers(store, moved, LayoutDestination(layout))
            tags.append(tag)
    platforms = [str(b.ctx.options.platform) for b in builders]
    return IndexResult(desc, digest.encoded, tags, warnings, images=results, platforms=platforms)
