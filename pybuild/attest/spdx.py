"""An inventory as an SPDX 2.3 JSON document, made and validated with spdx-tools.

The document describes the image (a CONTAINER package named by its manifest digest), which CONTAINS
its layers (ARCHIVE packages, by digest) and every package found. Ids and the namespace are derived
from the content, never random: the same inventory and ``created`` give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any

from .. import __version__
from ..errors import AttestError
from .common import content_uuid, utc
from .inventory import Inventory, Package
from .licenses import combine, spdx_license

SPDX_JSON = "application/spdx+json"
_ID_CHARS = re.compile(r"[^A-Za-z0-9.-]+")
_PERSON = re.compile(r"\s*(?P<name>[^<]*?)\s*(?:<(?P<email>[^>]*)>)?\s*")


def spdx_id(*parts: str) -> str:
    """An SPDX element id from ``parts`` (only letters, digits, "." and "-")."""
    return "SPDXRef-" + "-".join(_ID_CHARS.sub("-", p).strip("-") or "x" for p in parts)


def package_id(package: Package) -> str:
    digest = hashlib.sha256(f"{package.purl}\0{package.location}".encode()).hexdigest()[:16]
    return spdx_id("Package", package.type, package.name, digest)


def _actor(text: str | None) -> Any:
    from spdx_tools.spdx.model.actor import Actor, ActorType
    from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion

    match = _PERSON.fullmatch(text or "")
    if not text or match is None or not match.group("name"):
        return SpdxNoAssertion()
    # "Person: NAME (EMAIL)" is how SPDX writes it: keep parentheses out of the name
    name = match.group("name").replace("(", "[").replace(")", "]")
    return Actor(ActorType.PERSON, name, match.group("email") or None)


def spdx_document(inventory: Inventory, *, name: str, created: datetime) -> bytes:
    """The SPDX 2.3 JSON SBOM of ``inventory``; ``name`` names the image (its reference)."""
    from license_expression import Licensing
    from spdx_tools.spdx.jsonschema.document_converter import DocumentConverter
    from spdx_tools.spdx.model.actor import Actor, ActorType
    from spdx_tools.spdx.model.checksum import Checksum, ChecksumAlgorithm
    from spdx_tools.spdx.model.document import CreationInfo, Document
    from spdx_tools.spdx.model.extracted_licensing_info import ExtractedLicensingInfo
    from spdx_tools.spdx.model.package import ExternalPackageRef, ExternalPackageRefCategory, PackagePurpose
    from spdx_tools.spdx.model.package import Package as SpdxPackage
    from spdx_tools.spdx.model.relationship import Relationship, RelationshipType
    from spdx_tools.spdx.model.spdx_no_assertion import SpdxNoAssertion
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    licensing = Licensing()  # the expression is SPDX already: parse it as it is, no aliases
    created = utc(created)
    image_id = "SPDXRef-Image"
    image = SpdxPackage(
        spdx_id=image_id,
        name=name,
        download_location=SpdxNoAssertion(),
        version=str(inventory.image.digest),
        files_analyzed=False,
        checksums=[Checksum(ChecksumAlgorithm.SHA256, inventory.image.digest.encoded)]
        if inventory.image.digest.algorithm == "sha256"
        else [],
        primary_package_purpose=PackagePurpose.CONTAINER,
        comment=f"image manifest {inventory.image.digest}, config {inventory.config}, "
        f"platform {inventory.platform}",
    )
    packages = [image]
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, image_id)]
    for i, layer in enumerate(inventory.layers, 1):
        layer_id = spdx_id("Layer", str(i), layer.digest.encoded[:16])
        packages.append(
            SpdxPackage(
                spdx_id=layer_id,
                name=str(layer.digest),
                download_location=SpdxNoAssertion(),
                files_analyzed=False,
                checksums=[Checksum(ChecksumAlgorithm.SHA256, layer.digest.encoded)]
                if layer.digest.algorithm == "sha256"
                else [],
                primary_package_purpose=PackagePurpose.ARCHIVE,
                comment=f"layer {i} of {len(inventory.layers)}: {layer.media_type}, {layer.size} bytes"
                + (f", diff_id {layer.diff_id}" if layer.diff_id is not None else ""),
            )
        )
        relationships.append(Relationship(image_id, RelationshipType.CONTAINS, layer_id))
    extracted: dict[str, str] = {}
    seen: set[str] = set()
    for package in inventory.packages:
        pid = package_id(package)
        if pid in seen:
            continue
        seen.add(pid)
        license = combine([spdx_license(x) for x in package.licenses])
        declared: Any = SpdxNoAssertion()
        if license is not None:
            declared = licensing.parse(license.expression)
            for ref, text in license.refs:
                extracted.setdefault(ref, text)
        packages.append(
            SpdxPackage(
                spdx_id=pid,
                name=package.name,
                download_location=SpdxNoAssertion(),
                version=package.version,
                supplier=_actor(package.supplier),
                files_analyzed=False,
                license_concluded=SpdxNoAssertion(),
                license_declared=declared,
                copyright_text=SpdxNoAssertion(),
                source_info=f"{package.type} package found in {package.location}",
                external_references=[
                    ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", package.purl)
                ],
            )
        )
        relationships.append(Relationship(image_id, RelationshipType.CONTAINS, pid))
    comment = None
    if inventory.skipped:
        comment = "pybuild skipped:\n" + "\n".join(inventory.skipped)
    document = Document(
        creation_info=CreationInfo(
            spdx_version="SPDX-2.3",
            spdx_id="SPDXRef-DOCUMENT",
            name=name,
            document_namespace=f"urn:uuid:{content_uuid(inventory, name, created, 'spdx')}",
            creators=[Actor(ActorType.TOOL, f"pybuild-{__version__}")],
            created=created,
            document_comment=comment,
        ),
        packages=packages,
        relationships=relationships,
        extracted_licensing_info=[
            ExtractedLicensingInfo(license_id=ref, extracted_text=text, license_name=text)
            for ref, text in sorted(extracted.items())
        ],
    )
    messages = validate_full_spdx_document(document)
    if messages:
        raise AttestError(f"the SPDX document for {name} does not validate: {messages[0].validation_message}")
    return (
        json.dumps(
            DocumentConverter().convert(document),  # type: ignore[no-untyped-call]
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    ).encode()
