"""``check`` walks a layout and reports every problem; ``gc`` sweeps what nothing references."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import DigestMismatch, InvalidDocument, LayoutError, PybuildError
from . import mediatype
from .descriptor import Descriptor
from .digest import Digest
from .document import ImageConfig, Index, Manifest
from .imagelayout import Layout
from .referrers import subject_of


def _read_doc(layout: Layout, desc: Descriptor, problems: list[str]) -> bytes | None:
    try:
        return layout.blobs.read(desc.digest, desc.size)
    except PybuildError as exc:
        problems.append(str(exc))
        return None


def check_layout(layout: Layout, roots: list[Descriptor] | None = None) -> list[str]:
    """Every problem found under ``roots`` (index.json's manifests by default); [] when clean.

    Checks that each blob is present with the right size and digest, that documents parse with the
    media type their descriptor claims, and that each config has one diff_id per layer.
    """
    problems: list[str] = []
    if roots is None:
        try:
            roots = list(layout.read_index().manifests)
        except PybuildError as exc:
            return [str(exc)]
    seen: set[Digest] = set()

    def walk(desc: Descriptor, where: str, depth: int) -> None:
        if depth > 8:
            problems.append(f"{where}: indexes nest too deeply")
            return
        if not desc.digest.registered:
            problems.append(f"{where}: unsupported digest {desc.digest}")
            return
        key = desc.digest
        if key in seen:
            return
        seen.add(key)
        media = desc.media_type
        if media in mediatype.INDEXES:
            raw = _read_doc(layout, desc, problems)
            if raw is None:
                return
            try:
                index = Index.parse(raw, f"index {desc.digest} in {layout.label}")
            except PybuildError as exc:
                problems.append(str(exc))
                return
            if index.media_type != media and "mediaType" in index.to_dict():
                problems.append(
                    f"index {desc.digest} in {layout.label}: mediaType {index.media_type} != {media}"
                )
            for child in index.manifests:
                walk(child, f"index {desc.digest}", depth + 1)
        elif media in mediatype.MANIFESTS:
            raw = _read_doc(layout, desc, problems)
            if raw is None:
                return
            try:
                manifest = Manifest.parse(raw, f"manifest {desc.digest} in {layout.label}", lenient=True)
            except PybuildError as exc:
                problems.append(str(exc))
                return
            if "mediaType" in manifest.to_dict() and manifest.media_type != media:
                problems.append(
                    f"manifest {desc.digest} in {layout.label}: mediaType {manifest.media_type} != {media}"
                )
            check_manifest(manifest, desc)
        else:
            verify(desc)

    def verify(desc: Descriptor) -> None:
        if desc.digest in verified:
            return
        verified.add(desc.digest)
        try:
            layout.blobs.verify(desc.digest, desc.size)
        except PybuildError as exc:
            problems.append(str(exc))

    def check_manifest(manifest: Manifest, desc: Descriptor) -> None:
        name = f"manifest {desc.digest} in {layout.label}"
        config_desc = manifest.config
        artifact_type = manifest.to_dict().get("artifactType")
        if config_desc.media_type == mediatype.OCI_EMPTY and artifact_type is None:
            problems.append(f"{name}: its config is empty but it has no artifactType (manifest.md)")
        if desc.artifact_type is not None and desc.artifact_type != (artifact_type or config_desc.media_type):
            problems.append(
                f"{name}: listed with artifactType {desc.artifact_type}, but it is "
                f"{artifact_type or config_desc.media_type}"
            )
        image_layers = [layer for layer in manifest.layers if layer.media_type in mediatype.LAYERS]
        if config_desc.media_type in mediatype.CONFIGS:
            raw = _read_doc(layout, config_desc, problems)
            if raw is not None:
                try:
                    config = ImageConfig.parse(raw, f"config {config_desc.digest} in {layout.label}")
                except PybuildError as exc:
                    problems.append(str(exc))
                else:
                    if len(config.diff_ids) != len(image_layers):
                        problems.append(
                            f"{name}: {len(image_layers)} layers but its config has "
                            f"{len(config.diff_ids)} diff_ids"
                        )
            problems.extend(
                f"{name}: layer {layer.digest} has unknown media type {layer.media_type}"
                for layer in manifest.layers
                if layer.media_type not in mediatype.LAYERS
            )
        else:
            verify(config_desc)
        for layer in manifest.layers:
            if layer.urls and not layout.blobs.exists(layer.digest):
                continue  # foreign layer: lives at its URLs
            verify(layer)

    verified: set[Digest] = set()
    for i, root in enumerate(roots):
        label = root.ref_name or f"index.json manifests[{i}]"
        walk(root, label, 0)
    return problems


@dataclass
class GcResult:
    removed: list[Digest] = field(default_factory=list)
    freed: int = 0
    referrers: list[Digest] = field(default_factory=list)  # artifacts dropped from index.json
    temp_files: int = 0
    #: documents whose content is broken: kept, with every digest their bytes mention
    problems: list[str] = field(default_factory=list)


_MENTIONED = re.compile(rb"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")


def _mentioned(raw: bytes) -> set[Digest]:
    """Every digest a (possibly broken) document's bytes spell out."""
    found: set[Digest] = set()
    for match in _MENTIONED.finditer(raw):
        algorithm, encoded = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
        found.add(Digest(algorithm.decode(), encoded.decode()))
    return found


def _walk(layout: Layout, starts: list[Descriptor], found: set[Digest], problems: list[str] | None) -> None:
    """Add every blob ``starts`` reach to ``found``.

    A document whose content is broken (not JSON, not the schema, or not its digest) keeps every
    digest its bytes mention, and is reported in ``problems``: one damaged image does not stop the
    others from being collected. A document that cannot be read at all (an I/O error) raises.
    """
    stack = [(d, 0) for d in starts]
    while stack:
        desc, depth = stack.pop()
        if desc.digest in found or depth > 8:
            continue
        found.add(desc.digest)
        if desc.media_type in mediatype.INDEXES or desc.media_type in mediatype.MANIFESTS:
            if not layout.blobs.exists(desc.digest):
                continue
            try:
                raw = layout.blobs.read(desc.digest, desc.size)
                if desc.media_type in mediatype.INDEXES:
                    stack.extend((c, depth + 1) for c in Index.parse(raw).manifests)
                else:
                    manifest = Manifest.parse(raw, lenient=True)
                    stack.append((manifest.config, depth + 1))
                    stack.extend((layer, depth + 1) for layer in manifest.layers)
                    if manifest.subject is not None:
                        stack.append((manifest.subject, depth + 1))
            except (InvalidDocument, DigestMismatch) as exc:
                try:
                    with open(layout.blobs.path_of(desc.digest), "rb") as f:
                        text = f.read(64 << 20)
                except OSError:
                    text = b""
                found |= _mentioned(text)
                if problems is not None:
                    problems.append(f"kept {desc.digest} and what it names: {exc}")
            except PybuildError as exc:
                raise LayoutError(
                    f"gc stopped: cannot read {desc.digest} in {layout.label}: {exc}",
                    hints=[
                        "run `pybuild check` to see every problem; gc removes nothing while one is unreadable"
                    ],
                ) from None


def _live(layout: Layout, problems: list[str] | None = None) -> tuple[set[Digest], list[Descriptor]]:
    """The blobs gc keeps, and the untagged artifacts in index.json whose subject is gone.

    Tagged entries and untagged non-artifacts are roots. An untagged artifact (a manifest with a
    subject: an SBOM, a signature) lives while its subject does, and then keeps what it references;
    artifacts of artifacts follow, until nothing more comes to life."""
    roots: list[Descriptor] = []
    artifacts: list[tuple[Descriptor, Digest]] = []
    for desc in layout.read_index().manifests:
        subject = None
        if desc.ref_name is None:
            try:
                subject = subject_of(layout, desc)
            except PybuildError:
                subject = None  # walked as a root: the walk reports what cannot be read
        if subject is None:
            roots.append(desc)
        else:
            artifacts.append((desc, subject.digest))
    found: set[Digest] = set()
    _walk(layout, roots, found, problems)
    progress = True
    while progress:
        progress = False
        for item in list(artifacts):
            if item[1] in found:
                _walk(layout, [item[0]], found, problems)
                artifacts.remove(item)
                progress = True
    return found, [desc for desc, _ in artifacts]


def reachable(layout: Layout, problems: list[str] | None = None) -> set[Digest]:
    """Every blob gc keeps: what index.json's images reach, and the artifacts whose subject lives
    (broken documents are reported in ``problems``, see ``_walk``)."""
    return _live(layout, problems)[0]


def gc(layout: Layout, *, temp_age: float = 3600.0) -> GcResult:
    """Remove blobs index.json does not reach, artifacts whose subject is gone (from index.json too),
    and temp files of dead processes (or older than temp_age)."""
    result = GcResult()
    with layout.exclusive():
        keep, orphans = _live(layout, result.problems)
        if orphans:
            gone = {d.digest for d in orphans}
            layout.update_index(lambda ms: [m for m in ms if m.ref_name is not None or m.digest not in gone])
            result.referrers = sorted(gone)
        for digest in list(layout.blobs.digests()):
            if digest in keep:
                continue
            try:
                result.freed += layout.blobs.size(digest)
            except PybuildError:
                continue
            layout.blobs.remove(digest)
            result.removed.append(digest)
        result.temp_files = layout.private.sweep_temp_files(temp_age)
    return result
