"""A build's attestations (``--sbom``, ``--provenance``): made after the commit with pybuild.attest and
attached as OCI 1.1 referrers of the image's manifest, in the store and in each ``oci:`` target.

While the build runs, :class:`BuildFacts` gathers what only the build knows: when it started, the
digest of the Containerfile's bytes as read (standard input included), and each image it read (FROM,
COPY --from, RUN --mount from=) by name and the digest that name resolved to. After the commit,
:class:`Attestations` makes the documents once for the store's manifest; an ``oci:`` target whose
manifest differs (layers gzipped on the way) gets documents that name its own manifest and layers,
made from the same inventory and record. No secret reaches a record: the provenance takes the build
args in scope, the Containerfile's digest and the context's digest, never a ``--secret`` value.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..errors import AttestError, PybuildError, UsageError
from ..layout import Descriptor, Digest, Layout, attach, load_image, parse_name, parse_reference

if TYPE_CHECKING:
    from ..attest import BuildRecord, Inventory
    from .stepcontext import StepContext

ATTEST_TYPES = ("sbom", "provenance")
CREATED = "org.opencontainers.image.created"


def parse_attest(spec: str) -> str:
    """One ``--attest`` value, as BuildKit spells it: ``type=sbom`` or ``type=provenance``.
    BuildKit's other keys (generator, mode, ...) choose things pybuild does not have: refused."""
    pairs = [part.partition("=") for part in spec.split(",")]
    fields = {key: value for key, _, value in pairs}
    kind = fields.pop("type", "")
    if kind not in ATTEST_TYPES or len(fields) + 1 != len(pairs) or not all(sep for _, sep, _ in pairs):
        raise UsageError(f"--attest {spec!r}: expected type=sbom or type=provenance")
    if fields:
        keys = ", ".join(sorted(fields))
        raise UsageError(f"--attest {spec!r}: {keys}: not supported (pybuild has one {kind} generator)")
    return kind


@dataclass
class BuildFacts:
    """What a build's provenance records that only the build itself sees."""

    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    containerfile: Digest | None = None  # of the bytes read
    # (name, digest, platform) of each image read, in the order first read, each once: the
    # provenance's BaseImage values are made from them only when one is written (pybuild.attest
    # is not loaded by a build without attestations)
    images: list[tuple[str, Digest, str]] = field(default_factory=list)

    def read_containerfile(self, data: bytes) -> None:
        self.containerfile = Digest.of_bytes(data)

    def used_image(self, name: str, digest: Digest, platform: str) -> None:
        """The build read the image ``name`` (as FROM or --from gave it), resolved to ``digest``."""
        try:
            name = name if name.startswith("oci:") else str(parse_name(name.removeprefix("docker://")))
        except UsageError:
            pass  # an image ID prefix: recorded as given
        image = (name, digest, platform)
        if image not in self.images:
            self.images.append(image)


@dataclass(frozen=True)
class Attestation:
    """An attestation a build attached: where (the store's or an oci: target's label), the image
    manifest it refers to, and the artifact as index.json lists it (artifactType, annotations)."""

    where: str
    subject: Descriptor
    artifact: Descriptor


def image_name(tags: tuple[str, ...] | list[str], digest: Digest) -> str:
    """The name the store's attestations give the image: its first store tag, else the first oci:
    target's tag (never its directory), else its manifest digest."""
    refs = [parse_reference(t) for t in tags]
    for ref in refs:
        if ref.transport != "oci":
            return str(ref.name)
    for ref in refs:
        return str(ref.name)
    return str(digest)


def containerfile_path(ctx: StepContext) -> str:
    """The Containerfile as the provenance names it: relative to the context when it lies inside
    it, else as given ("-" for standard input)."""
    if str(ctx.file) == "-":
        return "-"
    try:
        return ctx.file.resolve().relative_to(ctx.context.resolve()).as_posix()
    except ValueError:
        return str(ctx.options.containerfile or ctx.file)


def context_digest(ctx: StepContext) -> Digest:
    """The build context's digest: every entry the ignore file lets through (what ``COPY . /``
    copies), each by path, type, permission bits, size, link target and content, hashed as COPY's
    cache key hashes its sources; times and owners are not part of it."""
    from .sources import sources_digest

    try:
        return Digest.parse(sources_digest(ctx.context, [""], ctx.rules))
    except PybuildError as exc:
        raise AttestError(f"provenance: the build context's digest: {exc.message}", hints=exc.hints) from None


class Attestations:
    """The documents of one build, made for the store's manifest and re-aimed at other manifests of
    the same image (its oci: targets)."""

    def __init__(self, ctx: StepContext, image: Descriptor) -> None:
        from ..attest import inventory, reproducible_times

        options = ctx.options
        finished = datetime.now(UTC)
        started, finished = reproducible_times(ctx.facts.started, finished, ctx.epoch)
        self.created = finished.replace(microsecond=0)
        self.name = image_name(list(options.tags), image.digest)
        self.sbom_format = options.sbom_format if options.sbom else None
        self.inventory: Inventory | None = None
        if options.sbom:
            self.inventory = inventory(ctx.store, image)
        self.record: BuildRecord | None = None
        if options.provenance:
            self.record = self._record(ctx, image, started, finished)
        self.image = image
        self.made = self.documents(ctx.store, image, self.name)  # any failure before a tag is set

    @staticmethod
    def _record(ctx: StepContext, image: Descriptor, started: datetime, finished: datetime) -> BuildRecord:
        from ..attest import BaseImage, BuildRecord
        from .state import platform_text

        assert ctx.facts.containerfile is not None, "the Containerfile was read"
        options = ctx.options
        return BuildRecord(
            subject_name="",
            subject_digest=image.digest,
            containerfile=containerfile_path(ctx),
            containerfile_digest=ctx.facts.containerfile,
            platform=platform_text(ctx.platform),
            started=started,
            finished=finished,
            base_images=tuple(BaseImage(*image) for image in ctx.facts.images),
            context_digest=context_digest(ctx),
            # the args in scope: those given that an ARG declared (in the stages built or before
            # the first FROM); an unused one is warned about and not recorded
            build_args={k: v for k, v in options.build_args.items() if k in ctx.used_args},
            target=options.target,
        )

    def _inventory_for(self, layout: Layout, image: Descriptor) -> Inventory:
        """The inventory of the same image under another manifest: that manifest and its layers
        (the same diff_ids, so the same files and packages)."""
        from ..attest import Layer, inventory

        assert self.inventory is not None
        if image.digest == self.inventory.image.digest:
            return self.inventory
        loaded = load_image(layout, image)
        if loaded.manifest.config.digest != self.inventory.config:  # not the same image: read it
            return inventory(layout, image)
        return replace(
            self.inventory,
            image=Descriptor(image.media_type, image.digest, image.size),
            layers=[
                Layer(desc.digest, desc.media_type, desc.size, diff_id)
                for desc, diff_id in zip(loaded.layers, loaded.config.diff_ids, strict=False)
            ],
        )

    def documents(
        self, layout: Layout, image: Descriptor, name: str
    ) -> list[tuple[str, bytes, dict[str, str]]]:
        """(artifact and media type, document, annotations) of each attestation of ``image`` (a
        manifest of this build's image in ``layout``), which the documents call ``name``."""
        from .. import attest

        stamp = self.created.strftime("%Y-%m-%dT%H:%M:%SZ")
        out = []
        if self.sbom_format is not None:
            found = self._inventory_for(layout, image)
            if self.sbom_format == "spdx":
                kind, data = attest.SPDX_JSON, attest.spdx_document(found, name=name, created=self.created)
            else:
                kind = attest.CYCLONEDX_JSON
                data = attest.cyclonedx_document(found, name=name, created=self.created)
            out.append((kind, data, {CREATED: stamp}))
        if self.record is not None:
            record = replace(self.record, subject_name=name, subject_digest=image.digest)
            notes = {CREATED: stamp, attest.PREDICATE_TYPE_ANNOTATION: attest.SLSA_PROVENANCE_V1}
            out.append((attest.IN_TOTO_JSON, attest.provenance_statement(record), notes))
        return out

    def attach(self, layout: Layout, image: Descriptor, name: str | None = None) -> list[Attestation]:
        """Attach the documents to ``image`` in ``layout`` (the store's, made already, when it is
        the store's manifest and name)."""
        name = name or self.name
        if image.digest == self.image.digest and name == self.name:
            made = self.made
        else:
            made = self.documents(layout, image, name)
        subject = Descriptor(image.media_type, image.digest, image.size)
        return [
            Attestation(layout.label, subject, attach(layout, subject, kind, kind, data, notes))
            for kind, data, notes in made
        ]


def make_attestations(ctx: StepContext, image: Descriptor) -> Attestations | None:
    """The attestations ``--sbom`` and ``--provenance`` ask for, of the store's ``image``; None
    when neither was asked for."""
    if not (ctx.options.sbom or ctx.options.provenance):
        return None
    return Attestations(ctx, image)


__all__ = [
    "ATTEST_TYPES",
    "Attestation",
    "Attestations",
    "BuildFacts",
    "make_attestations",
    "parse_attest",
]
