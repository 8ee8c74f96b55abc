"""The registry client (distribution-spec): HTTP on urllib3, auth, pull, push, validation.

``connection`` is the HTTP boundary (pooled connections, timeouts, the deadline, error
translation); ``client`` one registry (auth challenges, redirects, manifests, blobs); ``validate``
what an image must be before it is named; ``pull`` and ``push`` the transfers. Nothing here prints:
progress goes to a callback.
"""

from __future__ import annotations

from pathlib import Path

from ..auth import Credentials
from .client import Registry, RegistryOptions
from .connection import ConnectionDropped, DeadlineExceeded, InvalidResponse
from .pull import Progress, pick_manifest, pull, resolve_manifest
from .push import Outbound, push, push_converted, staging_at

__all__ = [
    "ConnectionDropped",
    "DeadlineExceeded",
    "InvalidResponse",
    "Outbound",
    "Progress",
    "Registry",
    "RegistryOptions",
    "login",
    "logout",
    "pick_manifest",
    "pull",
    "push",
    "push_converted",
    "resolve_manifest",
    "staging_at",
]


def login(
    registry: str,
    username: str,
    password: str,
    *,
    tls_verify: bool = True,
    auth_file: Path | None = None,
    verify: bool = True,
    cert_dir: Path | None = None,
) -> None:
    """Check ``username``/``password`` against ``registry`` (unless ``verify`` is False) and store them."""
    from ..auth import store_credentials

    creds = Credentials(username, password)
    if verify:
        client = Registry(registry, creds=creds, tls_verify=tls_verify, cert_dir=cert_dir)
        try:
            client.ping()
        finally:
            client.close()
    store_credentials(registry, creds, auth_file)


def logout(registry: str, *, auth_file: Path | None = None) -> bool:
    """Forget the credentials stored for ``registry``; False when there were none."""
    from ..auth import remove_credentials

    return remove_credentials(registry, auth_file)
