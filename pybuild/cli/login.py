"""Registry credentials: login, logout."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..errors import UsageError
from .application import app
from .options import CertDirOption, CredsOption, TlsOption, registry_options


@app.command()
def login(
    registry: str = typer.Argument(..., help="HOST[:PORT] of the registry."),
    username: str | None = typer.Option(None, "-u", "--username", help="User name."),
    password: str | None = typer.Option(None, "-p", "--password", help="Password (prefer --password-stdin)."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
    authfile: Path | None = typer.Option(None, "--authfile", help="The auth.json to write."),
    tls_verify: str | None = TlsOption,
    creds: str | None = CredsOption,
    cert_dir: Path | None = CertDirOption,
) -> None:
    """Check credentials against a registry and store them in auth.json."""
    from ..remote import login as remote_login

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    options = registry_options(creds, tls_verify, cert_dir, authfile, must_exist=False)
    if options.creds is not None:
        if username or password is not None:
            raise UsageError("login takes --creds or --username/--password, not both")
        username, password = options.creds.username, options.creds.password
    if not username:
        raise UsageError("login needs --username (or --creds USER:PASSWORD)")
    if password is None:
        raise UsageError("login needs --password or --password-stdin")
    remote_login(
        registry, username, password, tls_verify=options.tls_verify, auth_file=authfile, cert_dir=cert_dir
    )
    typer.echo(f"login succeeded: {registry}")


@app.command()
def logout(
    registry: str = typer.Argument(..., help="HOST[:PORT] of the registry."),
    authfile: Path | None = typer.Option(None, "--authfile", help="The auth.json to change."),
) -> None:
    """Remove stored credentials for a registry."""
    from ..remote import logout as remote_logout

    if not remote_logout(registry, auth_file=authfile):
        from ..errors import AuthError

        raise AuthError(f"not logged in to {registry}")  # a state, not a bad command line: exit 1
    typer.echo(f"removed login credentials for {registry}")
