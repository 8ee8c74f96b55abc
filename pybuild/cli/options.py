"""Options and flag parsing shared by several commands (registry flags, K=V pairs, times)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from ..errors import UsageError
from .commands import command_word

CompressionOption = typer.Option(
    None,
    "--compression",
    help="Re-compress layers: gzip, zstd or none (default: keep them, but gzip uncompressed ones for "
    "a registry, an OCI layout or an oci-archive).",
)
NoReferrersOption = typer.Option(
    False, "--no-referrers", help="Leave the image's OCI 1.1 referrers (SBOMs, signatures, ...) behind."
)
CredsOption = typer.Option(None, "--creds", help="USER[:PASSWORD] for the registry (asked for when omitted).")
TlsOption = typer.Option(
    None,
    "--tls-verify",
    metavar="[=true|false]",
    help="Verify the registry's TLS certificate (default true; --tls-verify=false to skip it).",
)
AuthfileOption = typer.Option(None, "--authfile", help="The auth.json to read credentials from.")
CertDirOption = typer.Option(
    None, "--cert-dir", help="CA certificates (*.crt) and a client pair (*.cert, *.key) for the registry."
)
#: flags that take true|false after "=", or mean true alone (as podman's and buildah's do)
BOOL_FLAGS = ("--tls-verify", "--src-tls-verify", "--dest-tls-verify")
REGISTRY_COMMANDS = ("build", "pull", "push", "copy", "inspect", "login", "manifest", "cache")


def bare_bool_flags(argv: list[str]) -> list[str]:
    """``--tls-verify`` alone means ``--tls-verify=true``: rewritten so that the argument after it is
    never taken as its value (``pybuild pull --tls-verify HOST/IMAGE``), as pflag parses it."""
    if command_word(argv) not in REGISTRY_COMMANDS:
        return argv
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        out.append(f"{arg}=true" if arg in BOOL_FLAGS else arg)
    return out


def flag_bool(value: str | None, flag: str, default: bool = True) -> bool:
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise UsageError(f"{flag}={value!r}: expected true or false")


def registry_options(
    creds: str | None,
    tls_verify: str | None,
    cert_dir: Path | None,
    authfile: Path | None,
    *,
    flag: str = "--tls-verify",
    default_tls: bool = True,
    must_exist: bool = True,
    needed: bool = True,
) -> Any:
    """A RegistryOptions from the registry flags: ``--creds USER[:PASS]`` (the password is asked for
    on a terminal when missing), ``--tls-verify[=BOOL]``, ``--cert-dir DIR``, ``--authfile FILE``.
    Not ``needed`` (no registry in the command's references): the flags are checked all the same,
    and None comes back without loading the registry client."""
    parsed = None
    if creds is not None:
        user, sep, password = creds.partition(":")
        if not user:
            raise UsageError("--creds: expected USER[:PASSWORD]")
        if not sep:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"--creds {user}: no password given, and no terminal to ask for one: "
                    "pass --creds USER:PASSWORD"
                )
            import getpass

            password = getpass.getpass(f"Password for {user}: ")
        parsed = (user, password)
    if cert_dir is not None and not cert_dir.is_dir():
        raise UsageError(f"--cert-dir {cert_dir}: not a directory")
    if authfile is not None and must_exist and not authfile.is_file():
        raise UsageError(f"--authfile {authfile}: no such file")
    verify = flag_bool(tls_verify, flag, default_tls)
    if not needed:
        return None
    from ..remote import Credentials, RegistryOptions

    return RegistryOptions(
        None if parsed is None else Credentials(*parsed), verify, cert_dir=cert_dir, auth_file=authfile
    )


PlatformOption = typer.Option(None, "--platform", help="OS/ARCH[/VARIANT] to pick from an index.")
ISOLATIONS = ("auto", "native", "fuse", "copy", "inplace")
IsolationOption = typer.Option(
    None,
    "--isolation",
    envvar="PYBUILD_RUN_MODE",
    help="How RUN steps run: auto (probe native overlay, fuse-overlayfs, copy), native, fuse, copy, "
    "or inplace (root in a throwaway CI container only: the image replaces the container's own /).",
)


def isolation_value(value: str | None) -> str | None:
    """--isolation's value (or $PYBUILD_RUN_MODE's), checked like any flag: a bad one exits 2."""
    if value is not None and value not in ISOLATIONS:
        raise UsageError(f"--isolation {value!r}: expected {', '.join(ISOLATIONS)}")
    return value


def pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {value!r}: expected KEY=VALUE")
        out[key] = val
    return out
