"""pybuild: a rootless OCI container image toolchain.

The Python API (the CLI is a thin layer over it)::

    import pybuild

    store = pybuild.open_store("/tmp/store")
    result = pybuild.build(store, pybuild.BuildOptions(context="app", tags=["localhost/app"]))
    pybuild.unpack(store, "localhost/app", "/tmp/bundle")

- stores and layouts: :func:`open_store`, :func:`open_layout`, :func:`check`;
- building: :func:`build` with :class:`BuildOptions` (a value that refuses bad input when made);
  several platforms give an :class:`IndexResult` (the index, and each platform's image);
- moving images: :func:`pull`, :func:`push`, :func:`copy`, :func:`tag`, :func:`untag` (with
  :class:`RegistryOptions`);
- bundles: :func:`unpack`, :func:`repack`;
- configs: :func:`configure` with :class:`ConfigChanges`;
- containers: :func:`run_image`.

References are strings as the CLI takes them: a store name (``alpine``, ``localhost/app:1``), an
image ID prefix, ``oci:DIR[:TAG]``, and for the transfer verbs ``docker://...``,
``docker-archive:FILE[:NAME]`` and ``oci-archive:FILE[:REF]``. Every failure is a
:class:`PybuildError` subclass with a one-line message. Warnings go to Python's :mod:`warnings` as
:class:`PybuildWarning`, or into a list with :func:`collect_warnings`.

Names load on first use: ``import pybuild`` costs nothing the CLI does not need.
"""

from __future__ import annotations

import importlib

# typing costs a few ms to import and `pybuild --version` needs nothing from it (mypy knows the name)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# the one place the version is written (pyproject.toml reads it); a plain value, because looking it
# up through importlib.metadata costs ~30 ms on every command
__version__ = "0.1.0.dev0"

# public name -> (module, name there); __all__ lists the same names
_API: dict[str, tuple[str, str]] = {
    # errors and warnings
    "PybuildError": ("pybuild.errors", "PybuildError"),
    "UsageError": ("pybuild.errors", "UsageError"),
    "LayoutError": ("pybuild.errors", "LayoutError"),
    "ImageNotFound": ("pybuild.errors", "ImageNotFound"),
    "LayerError": ("pybuild.errors", "LayerError"),
    "ContainerfileError": ("pybuild.errors", "ContainerfileError"),
    "RunError": ("pybuild.errors", "RunError"),
    "StepFailed": ("pybuild.errors", "StepFailed"),
    "BundleError": ("pybuild.errors", "BundleError"),
    "RegistryError": ("pybuild.errors", "RegistryError"),
    "PybuildWarning": ("pybuild.errors", "PybuildWarning"),
    "collect_warnings": ("pybuild.errors", "collect_warnings"),
    # stores, layouts, images
    "ImageStore": ("pybuild.layout", "ImageStore"),
    "Layout": ("pybuild.layout", "Layout"),
    "Image": ("pybuild.layout", "Image"),
    "Descriptor": ("pybuild.layout", "Descriptor"),
    "Digest": ("pybuild.layout", "Digest"),
    "Platform": ("pybuild.layout", "Platform"),
    "open_store": ("pybuild.layout", "open_store"),
    "open_layout": ("pybuild.layout", "open_layout"),
    "locate": ("pybuild.layout", "locate"),
    "check": ("pybuild.layout", "check_layout"),
    "ConfigChanges": ("pybuild.layout", "ConfigChanges"),
    "configure": ("pybuild.layout", "configure"),
    "untag": ("pybuild.layout", "untag"),
    # building
    "BuildOptions": ("pybuild.builder", "BuildOptions"),
    "BuildResult": ("pybuild.builder", "BuildResult"),
    "IndexResult": ("pybuild.builder", "IndexResult"),
    "build": ("pybuild.builder", "build"),
    # moving images
    "RegistryOptions": ("pybuild.remote", "RegistryOptions"),
    "Credentials": ("pybuild.remote", "Credentials"),
    "CopyReport": ("pybuild.remote", "CopyReport"),
    "copy": ("pybuild.remote", "copy_image"),
    "pull": ("pybuild.remote", "pull_image"),
    "push": ("pybuild.remote", "push_image"),
    "tag": ("pybuild.remote", "tag_image"),
    # bundles and containers
    "unpack": ("pybuild.bundle", "unpack_ref"),
    "repack": ("pybuild.bundle", "repack"),
    "Bind": ("pybuild.bundle", "Bind"),
    "run_image": ("pybuild.bundle", "run_image"),
}

__all__ = [
    "Bind",
    "BuildOptions",
    "BuildResult",
    "BundleError",
    "ConfigChanges",
    "ContainerfileError",
    "CopyReport",
    "Credentials",
    "Descriptor",
    "Digest",
    "Image",
    "ImageNotFound",
    "ImageStore",
    "IndexResult",
    "LayerError",
    "Layout",
    "LayoutError",
    "Platform",
    "PybuildError",
    "PybuildWarning",
    "RegistryError",
    "RegistryOptions",
    "RunError",
    "StepFailed",
    "UsageError",
    "__version__",
    "build",
    "check",
    "collect_warnings",
    "configure",
    "copy",
    "locate",
    "open_layout",
    "open_store",
    "pull",
    "push",
    "repack",
    "run_image",
    "tag",
    "unpack",
    "untag",
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module 'pybuild' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


if TYPE_CHECKING:  # what type checkers and editors see; at run time the names load on first use
    from .builder import BuildOptions, BuildResult, IndexResult, build
    from .bundle import Bind, repack, run_image
    from .bundle import unpack_ref as unpack
    from .errors import (
        BundleError,
        ContainerfileError,
        ImageNotFound,
        LayerError,
        LayoutError,
        PybuildError,
        PybuildWarning,
        RegistryError,
        RunError,
        StepFailed,
        UsageError,
        collect_warnings,
    )
    from .layout import (
        ConfigChanges,
        Descriptor,
        Digest,
        Image,
        ImageStore,
        Layout,
        Platform,
        configure,
        locate,
        open_layout,
        open_store,
        untag,
    )
    from .layout import check_layout as check
    from .remote import CopyReport, Credentials, RegistryOptions
    from .remote import copy_image as copy
    from .remote import pull_image as pull
    from .remote import push_image as push
    from .remote import tag_image as tag
