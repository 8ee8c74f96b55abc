"""An inventory as a CycloneDX 1.5 JSON document, made with cyclonedx-python-lib.

metadata.component is the image (type container, version its manifest digest); the components are
the packages found (type library, with purl, publisher and licenses) and the layers (type file, by
SHA-256). bom-refs and the serial number are derived from the content: the same inventory and
``created`` give the same bytes. What was skipped is listed as ``pybuild:skipped`` properties.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from .. import __version__
from ..errors import AttestError
from .common import content_uuid, utc
from .inventory import Inventory
from .licenses import combine, spdx_license

CYCLONEDX_JSON = "application/vnd.cyclonedx+json"


def _licenses(texts: tuple[str, ...]) -> list[Any]:
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression

    license = combine([spdx_license(x) for x in texts])
    if license is None:
        return []
    if " " not in license.expression:  # one license: its SPDX id, or its name where SPDX has none
        if license.known:
            return [DisjunctiveLicense(id=license.expression)]
        return [DisjunctiveLicense(name=license.text)]
    return [LicenseExpression(license.expression)]


def cyclonedx_document(inventory: Inventory, *, name: str, created: datetime) -> bytes:
    """The CycloneDX 1.5 JSON SBOM of ``inventory``; ``name`` names the image (its reference)."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot5
    from packageurl import PackageURL

    created = utc(created)
    image = Component(
        type=ComponentType.CONTAINER,
        name=name,
        version=str(inventory.image.digest),
        bom_ref=f"image:{inventory.image.digest}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=inventory.image.digest.encoded)]
        if inventory.image.digest.algorithm == "sha256"
        else [],
        properties=[
            Property(name="pybuild:config", value=str(inventory.config)),
            Property(name="pybuild:platform", value=str(inventory.platform)),
        ],
    )
    components = []
    for i, layer in enumerate(inventory.layers, 1):
        properties = [
            Property(name="pybuild:layer:index", value=str(i)),
            Property(name="pybuild:layer:mediaType", value=layer.media_type),
            Property(name="pybuild:layer:size", value=str(layer.size)),
        ]
        if layer.diff_id is not None:
            properties.append(Property(name="pybuild:layer:diffID", value=str(layer.diff_id)))
        components.append(
            Component(
                type=ComponentType.FILE,
                name=str(layer.digest),
                bom_ref=f"layer:{i}:{layer.digest}",
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=layer.digest.encoded)]
                if layer.digest.algorithm == "sha256"
                else [],
                properties=properties,
            )
        )
    seen = set()
    for package in inventory.packages:
        ref = hashlib.sha256(f"{package.purl}\0{package.location}".encode()).hexdigest()[:16]
        if ref in seen:
            continue
        seen.add(ref)
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=package.name,
                version=package.version,
                bom_ref=f"{package.purl}#{ref}",
                purl=PackageURL.from_string(package.purl),
                publisher=package.supplier,
                licenses=_licenses(package.licenses),
                properties=[
                    Property(name="pybuild:package:type", value=package.type),
                    Property(name="pybuild:package:location", value=package.location),
                ],
            )
        )
    bom = Bom(
        serial_number=content_uuid(inventory, name, created, "cyclonedx"),
        metadata=BomMetaData(
            timestamp=created,
            component=image,
            tools=ToolRepository(
                components=[Component(type=ComponentType.APPLICATION, name="pybuild", version=__version__)]
            ),
            properties=[Property(name="pybuild:skipped", value=line) for line in inventory.skipped],
        ),
        components=components,
    )
    bom.register_dependency(image, components)
    text = JsonV1Dot5(bom).output_as_string(indent=2)
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("specVersion") != "1.5":
        raise AttestError(f"the CycloneDX document for {name} is not CycloneDX 1.5")
    return (text.rstrip("\n") + "\n").encode()
