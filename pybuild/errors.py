"""The errors a user can act on.

Every failure pybuild expects is a :class:`PybuildError`. The CLI prints ``error: <message>`` on one
line, then each hint on its own line, and exits 1 (2 for a :class:`UsageError`) with no traceback
(``PYBUILD_DEBUG=1`` shows it).
Errors from other libraries are translated into these where they enter pybuild; anything else that
escapes is a bug and keeps its traceback.

Warnings (something the user should know that does not stop the work) have one channel too:
:func:`warn`. The CLI installs a printer (``warning: <message>``, one line each, on stderr); the
Python API collects them (:func:`collect_warnings`); with neither, they go to Python's
:mod:`warnings` as :class:`PybuildWarning`.

The message names what failed and the object it failed on, for example
``blob sha256:ab12... in oci:/x is corrupt: size 10, expected 12``.

This module imports nothing from pybuild.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator


class PybuildError(Exception):
    """Base of every error pybuild reports to a user."""

    def __init__(self, message: str, *, hints: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hints: list[str] = list(hints)

    def __str__(self) -> str:
        return self.message


class UsageError(PybuildError):
    """A flag, argument or reference the user gave is malformed: a bad command line (exit status 2)."""


# --- layout -----------------------------------------------------------------------------------


class LayoutError(PybuildError):
    """An OCI image layout, a document in it, or a blob is missing, invalid or corrupt."""


class InvalidDigest(LayoutError):
    """A string is not a digest pybuild accepts."""


class InvalidDocument(LayoutError):
    """A JSON document (descriptor, manifest, index, config, oci-layout) breaks the spec."""


class BlobNotFound(LayoutError):
    """A blob that a document references is not in the blob store."""


class DigestMismatch(LayoutError):
    """A blob's content does not match its digest or size."""


class ImageNotFound(LayoutError):
    """No image answers to a reference."""


class AmbiguousImage(LayoutError):
    """An image ID prefix matches images with different configs."""


class LockTimeout(LayoutError):
    """Another process kept the layout's lock for too long."""


# --- layers -----------------------------------------------------------------------------------


class LayerError(PybuildError):
    """A layer tar stream or a changeset is invalid, corrupt or hostile."""


class UnsafeLayer(LayerError):
    """A layer entry tries to leave or replace the root it is applied to."""


# --- containerfile ----------------------------------------------------------------------------


class ContainerfileError(PybuildError):
    """A Containerfile cannot be parsed or built. The message starts with ``FILE:LINE:``."""

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, hints: Iterable[str] = ()
    ) -> None:
        self.file = file
        self.line = line
        self.reason = message
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(f"{where}{message}", hints=hints)


# --- run / bundle / remote --------------------------------------------------------------------


class RunError(PybuildError):
    """A container could not be set up or run (user namespace, mounts, process)."""


class StepFailed(RunError):
    """A command ran and exited non-zero."""

    def __init__(self, message: str, *, exit_status: int, hints: Iterable[str] = ()) -> None:
        super().__init__(message, hints=hints)
        self.exit_status = exit_status


class BundleError(PybuildError):
    """A runtime bundle cannot be written or read."""


class RegistryError(PybuildError):
    """A registry or archive transport failed or answered something invalid."""


class AuthError(RegistryError):
    """A registry refused the credentials, or none were found."""


# --- attestations -----------------------------------------------------------------------------


class AttestError(PybuildError):
    """An SBOM, a provenance statement or an artifact attached to an image cannot be made."""


# --- warnings ---------------------------------------------------------------------------------


class PybuildWarning(UserWarning):
    """A pybuild warning, when no printer or collector is installed (see :func:`warn`)."""


WarningHandler = Callable[[str], None]
# the installed handlers, innermost last (a stack: collect_warnings nests inside the CLI's printer)
_handlers: list[WarningHandler] = []


def warn(message: str) -> None:
    """Report ``message`` (one line, no ``warning:`` prefix) to the innermost installed handler, or to
    Python's :mod:`warnings` when none is installed. A forked child inherits the handlers."""
    if _handlers:
        _handlers[-1](message)
        return
    import warnings

    warnings.warn(message, PybuildWarning, stacklevel=2)


@contextlib.contextmanager
def warnings_to(handler: WarningHandler) -> Iterator[None]:
    """Send every :func:`warn` inside the block to ``handler`` (the CLI's printer)."""
    _handlers.append(handler)
    try:
        yield
    finally:
        _handlers.remove(handler)


@contextlib.contextmanager
def collect_warnings(*, forward: bool = True) -> Iterator[list[str]]:
    """Collect every :func:`warn` inside the block in the list it yields; with ``forward``, each is
    also passed to the handler that was installed before (the CLI's printer), if any."""
    found: list[str] = []
    outer = list(_handlers)

    def collect(message: str) -> None:
        found.append(message)
        if forward and outer:
            outer[-1](message)

    with warnings_to(collect):
        yield found
