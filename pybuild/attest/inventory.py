"""What an image holds, for an SBOM: its OS and Python packages, and its layers by digest.

``inventory`` reads the image's layers once (see imagefiles) and never unpacks them. Bad input is not
an error: a missing package database, a corrupt status file or a distribution with bad metadata each
give one line in ``Inventory.skipped`` (and a :func:`~pybuild.errors.warn`) and the rest is still
listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import warn
from ..layout import Descriptor, Digest, Layout, Platform, load_image
from .apk import parse_installed
from .dpkg import copyright_licenses, parse_status, source_of
from .imagefiles import APK_INSTALLED, DPKG_STATUS, DPKG_STATUS_D, OS_RELEASE, ImageFiles, read_image_files
from .pydist import parse_metadata

_STATUS_D = re.compile(re.escape(DPKG_STATUS_D) + r"[^/]+")
_PY_METADATA = re.compile(
    r"(?:.+/)?(?:site|dist)-packages/[^/]+\.(?:dist-info/METADATA|egg-info/PKG-INFO|egg-info)"
)


@dataclass(frozen=True)
class Package:
    """One package: ``type`` is "deb", "apk" or "python"; ``location`` the file it was found in."""

    type: str
    name: str
    version: str
    purl: str
    location: str
    supplier: str | None = None
    licenses: tuple[str, ...] = ()  # as the package states them, each must hold (see licenses.py)

    @property
    def license(self) -> str | None:
        """The licenses in one line, or None where the package states none."""
        if not self.licenses:
            return None
        return " AND ".join(f"({x})" if len(self.licenses) > 1 and " " in x else x for x in self.licenses)


@dataclass(frozen=True)
class Layer:
    digest: Digest
    media_type: str
    size: int
    diff_id: Digest | None


@dataclass(frozen=True)
class Distro:
    """From /etc/os-release: ID ("debian"), VERSION_ID ("12"), PRETTY_NAME."""

    id: str
    version_id: str | None = None
    pretty_name: str | None = None


@dataclass
class Inventory:
    image: Descriptor  # the image manifest
    config: Digest
    platform: Platform
    layers: list[Layer]
    packages: list[Package] = field(default_factory=list)
    distro: Distro | None = None
    skipped: list[str] = field(default_factory=list)


def inventory(layout: Layout, descriptor: Descriptor, platform: Platform | None = None) -> Inventory:
    """The inventory of the image ``descriptor`` names in ``layout`` (an index: the ``platform`` one,
    the host's by default)."""
    image = load_image(layout, descriptor, platform)
    diff_ids: list[Digest | None] = list(image.config.diff_ids)
    diff_ids += [None] * (len(image.layers) - len(diff_ids))
    result = Inventory(
        image=Descriptor(image.descriptor.media_type, image.descriptor.digest, image.descriptor.size),
        config=image.manifest.config.digest,
        platform=image.config.platform,
        layers=[
            Layer(layer.digest, layer.media_type, layer.size, diff_id)
            for layer, diff_id in zip(image.layers, diff_ids, strict=False)
        ],
    )
    files = read_image_files(layout, image.layers)
    result.skipped.extend(files.skipped)
    result.distro = _distro(files)
    packages: list[Package] = []
    packages += _debian(files, result)
    packages += _alpine(files, result)
    packages += _python(files, result)
    result.packages = sorted(packages, key=lambda p: (p.type, p.name, p.version, p.location))
    for line in result.skipped:
        warn(line)
    return result


def _purl(type_: str, namespace: str | None, name: str, version: str, qualifiers: dict[str, str]) -> str:
    from packageurl import PackageURL

    return str(
        PackageURL(
            type=type_,
            namespace=namespace,
            name=name,
            version=version,
            qualifiers={k: v for k, v in qualifiers.items() if v},
        ).to_string()
    )


def _distro(files: ImageFiles) -> Distro | None:
    for path in OS_RELEASE:
        data = files.read(path)
        if data is None:
            continue
        values: dict[str, str] = {}
        for line in data.decode("utf-8", errors="replace").splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                    value = value[1:-1]
                values[key] = value
        if values.get("ID"):
            return Distro(values["ID"], values.get("VERSION_ID") or None, values.get("PRETTY_NAME") or None)
    return None


def _distro_qualifier(distro: Distro | None) -> str | None:
    if distro is None:
        return None
    return f"{distro.id}-{distro.version_id}" if distro.version_id else distro.id


def _debian(files: ImageFiles, result: Inventory) -> list[Package]:
    databases = [DPKG_STATUS] if files.read(DPKG_STATUS) is not None else []
    databases += files.paths(_STATUS_D)
    if not databases:
        return []
    namespace = result.distro.id if result.distro is not None else "debian"
    out = []
    for path in databases:
        data = files.read(path)
        if data is None:
            continue
        found, skipped = parse_status(data, "/" + path)
        result.skipped.extend(skipped)
        for deb in found:
            source = source_of(deb)
            upstream = None
            if source is not None:
                upstream = source[0] if source[1] is None else f"{source[0]}@{source[1]}"
            licenses = copyright_licenses(files.read(f"usr/share/doc/{deb.name}/copyright") or b"")
            out.append(
                Package(
                    type="deb",
                    name=deb.name,
                    version=deb.version,
                    purl=_purl(
                        "deb",
                        namespace,
                        deb.name,
                        deb.version,
                        {
                            "arch": deb.architecture or "",
                            "distro": _distro_qualifier(result.distro) or "",
                            "upstream": upstream or "",
                        },
                    ),
                    location="/" + path,
                    supplier=deb.maintainer,
                    licenses=tuple(licenses),
                )
            )
    return out


def _alpine(files: ImageFiles, result: Inventory) -> list[Package]:
    data = files.read(APK_INSTALLED)
    if data is None:
        if not any(p.startswith("var/lib/dpkg/") for p in files.files):
            result.skipped.append(
                f"no package database (/{DPKG_STATUS}, /{DPKG_STATUS_D}*, /{APK_INSTALLED}): "
                "no OS packages listed"
            )
        return []
    namespace = result.distro.id if result.distro is not None else "alpine"
    found, skipped = parse_installed(data, "/" + APK_INSTALLED)
    result.skipped.extend(skipped)
    out = []
    for apk in found:
        qualifiers = {
            "arch": apk.architecture or "",
            "distro": _distro_qualifier(result.distro) or "",
            "upstream": apk.origin if apk.origin and apk.origin != apk.name else "",
        }
        out.append(
            Package(
                type="apk",
                name=apk.name,
                version=apk.version,
                purl=_purl("apk", namespace, apk.name, apk.version, qualifiers),
                location="/" + APK_INSTALLED,
                supplier=apk.maintainer,
                licenses=(apk.license,) if apk.license else (),
            )
        )
    return out


def _python(files: ImageFiles, result: Inventory) -> list[Package]:
    out = []
    for path in files.paths(_PY_METADATA):
        data = files.read(path)
        if data is None:
            continue  # not read: imagefiles said why
        dist, problem = parse_metadata(data, "/" + path)
        if problem is not None:
            result.skipped.append(problem)
        if dist is None:
            continue
        out.append(
            Package(
                type="python",
                name=dist.name,
                version=dist.version,
                purl=_purl("pypi", None, dist.normalized, dist.version, {}),
                location="/" + path,
                supplier=dist.author,
                licenses=(dist.license,) if dist.license else (),
            )
        )
    return out
