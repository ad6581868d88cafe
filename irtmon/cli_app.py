"""``irtmon app`` (the clinicians' Streamlit app) and ``irtmon users`` (its accounts).

Registered in :mod:`irtmon.cli` with ``register(app)``.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from irtmon.common import get_settings

users_app = typer.Typer(help="Accounts of the monitoring app.", no_args_is_help=True)
ENTRY = Path(__file__).resolve().parents[1] / "monitoring_app" / "streamlit_app.py"


def app_command(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    address: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    headless: Annotated[bool, typer.Option(help="Do not open a browser.")] = True,
    refresh_s: Annotated[
        float | None, typer.Option(help="Live refresh interval of the pages (seconds).")
    ] = None,
) -> None:
    """Start the monitoring app (Streamlit) on the configured database."""
    env = dict(os.environ)
    if refresh_s is not None:
        env["IRTMON_APP_REFRESH_S"] = str(refresh_s)
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ENTRY),
        "--server.headless",
        str(headless).lower(),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]
    # Replace this process with Streamlit, so that stopping it (SIGTERM to this pid) stops the
    # server itself and no orphan is left behind.
    os.chdir(ENTRY.parents[1])
    os.execve(sys.executable, cmd, env)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, . _ @ -).")],
    role: Annotated[str, typer.Option(help="clinician, researcher or admin.")] = "clinician",
    cohort: Annotated[
        list[str] | None, typer.Option(help="Cohort the user may see (repeat for several).")
    ] = None,
    oidc_subject: Annotated[
        str | None, typer.Option(help="E-mail the single sign-on returns for this user.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input (scripts).")
    ] = False,
    no_password: Annotated[bool, typer.Option(help="Single sign-on only.")] = False,
) -> None:
    """Create or update a user (argon2id password hash, role, cohorts). Audited."""
    from core.db import connect
    from core.db.users import save_user
    from core.passwords import hash_password
    from schemas.enums import Role

    try:
        role_value = Role(role)
    except ValueError as err:
        raise typer.BadParameter("role must be clinician, researcher or admin") from err
    password_hash = None
    if not no_password:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"Password for {name}: ")
            if getpass.getpass("Again: ") != password:
                raise typer.BadParameter("the passwords differ")
        try:
            password_hash = hash_password(password)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
    cohorts = list(cohort or ([] if role_value is Role.ADMIN else ["default"]))
    with connect(get_settings()) as conn:  # committed when the block ends
        created = save_user(
            conn,
            name,
            role_value.value,
            password_hash,
            cohorts,
            oidc_subject,
            actor=f"cli:{getpass.getuser()}",
        )
    scope = "all cohorts" if role_value is Role.ADMIN else ", ".join(cohorts)
    typer.echo(f"{'created' if created else 'updated'} {name} ({role_value.value}; {scope})")


def _set_active(name: str, active: bool) -> None:
    from core.db import connect
    from core.db.users import set_active

    with connect(get_settings()) as conn:  # committed when the block ends
        found = set_active(conn, name, active, actor=f"cli:{getpass.getuser()}")
    if not found:
        typer.echo(f"no user named {name}; `irtmon users add {name}` creates one", err=True)
        raise typer.Exit(1)
    typer.echo(f"{'enabled' if active else 'disabled'} {name}")


@users_app.command("disable")
def users_disable(
    name: Annotated[str, typer.Argument(help="User name to disable.")],
) -> None:
    """Disable a user: no new sign-in, and an open app session ends at its next interaction.
    Audited (user_disable); the account, its cohorts and its history are kept."""
    _set_active(name, False)


@users_app.command("enable")
def users_enable(
    name: Annotated[str, typer.Argument(help="User name to enable again.")],
) -> None:
    """Enable a disabled user again (same role and cohorts). Audited (user_enable)."""
    _set_active(name, True)


def register(app: typer.Typer) -> None:
    """Add ``irtmon app`` and ``irtmon users`` to the main command line."""
    app.command("app")(app_command)
    app.add_typer(users_app, name="users")


def main() -> None:
    """``python -m irtmon.cli_app app|users ...`` (before cli.py registers them)."""
    standalone = typer.Typer(no_args_is_help=True, add_completion=False)
    register(standalone)
    standalone()


if __name__ == "__main__":
    main()
