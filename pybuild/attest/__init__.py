"""Attestations: what an image holds (an SBOM, SPDX 2.3 or CycloneDX 1.5) and how it was built (SLSA v1
provenance), made from an image in a layout without unpacking it.

The document libraries (spdx-tools, cyclonedx-python-lib, python-debian, packaging, license-expression)
are imported only inside the functions that make SBOMs: importing this package costs nothing more.
Attaching the documents to the image is pybuild.layout.referrers' job.
"""

from ..layout.referrers import IN_TOTO_JSON
from .cyclonedx import CYCLONEDX_JSON, cyclonedx_document
from .imagefiles import ImageFile, ImageFiles, read_image_files, sbom_file_limit
from .inventory import Distro, Inventory, Layer, Package, inventory
from .provenance import (
    PREDICATE_TYPE_ANNOTATION,
    SLSA_PROVENANCE_V1,
    BaseImage,
    BuildRecord,
    provenance_statement,
    reproducible_times,
)
from .spdx import SPDX_JSON, spdx_document

__all__ = [
    "CYCLONEDX_JSON",
    "IN_TOTO_JSON",
    "PREDICATE_TYPE_ANNOTATION",
    "SLSA_PROVENANCE_V1",
    "SPDX_JSON",
    "BaseImage",
    "BuildRecord",
    "Distro",
    "ImageFile",
    "ImageFiles",
    "Inventory",
    "Layer",
    "Package",
    "cyclonedx_document",
    "inventory",
    "provenance_statement",
    "read_image_files",
    "reproducible_times",
    "sbom_file_limit",
    "spdx_document",
]
