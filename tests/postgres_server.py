"""A real PostgreSQL 15 server for tests, run from Debian's postgresql-15 package.

PostgreSQL refuses to run as root, so under root the server runs as the ``postgres``
system user (through ``runuser``) in a temp folder that user owns. It listens only on
127.0.0.1 at a free port, trusts local connections, and keeps its socket in that folder.
Durability is switched off: the data lives only as long as the test session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "postgresql-15"
SERVER_USER = "postgres"
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",  # MLflow keeps a pool per database URI for the whole session
}


class Unavailable(RuntimeError):
    """No PostgreSQL server can run on this machine (package or user missing)."""


def find_bin_dir() -> Path:
    """The folder holding initdb and pg_ctl from the postgresql-15 package."""
    try:
        listing = subprocess.run(
            ["dpkg", "-L", PACKAGE], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        raise Unavailable(
            f"Debian package {PACKAGE} is not installed (apt-get install -y {PACKAGE})"
        ) from None
    found = [Path(line).parent for line in listing.splitlines() if line.endswith("/bin/initdb")]
    if not found:
        raise Unavailable(f"package {PACKAGE} lists no bin/initdb")
    return found[0]


def server_command_prefix() -> list[str]:
    """How to run a server program as a user PostgreSQL accepts: ``runuser`` when we are root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        raise Unavailable(
            "running as root, and runuser (to run the server as another user) is missing"
        )
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise Unavailable(
            f"running as root, and there is no '{SERVER_USER}' user to run the server as"
        ) from None
    return ["runuser", "-u", SERVER_USER, "--"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    """One running server; ``stop`` shuts it down and removes its folder."""

    bin_dir: Path
    folder: Path
    port: int
    prefix: tuple[str, ...]

    @classmethod
    def start(cls) -> PostgresServer:
        """initdb a cluster in a fresh temp folder and start it on a free loopback port."""
        bin_dir, prefix = find_bin_dir(), tuple(server_command_prefix())
        folder = Path(tempfile.mkdtemp(prefix="keel-pg-"))
        if prefix:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(folder, account.pw_uid, account.pw_gid)
        server = cls(bin_dir, folder, free_port(), prefix)
        try:
            server._run(
                "initdb",
                "-D",
                str(server.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            )
            options = " ".join(
                f"-c {key}={value}"
                for key, value in {
                    **SETTINGS,
                    "port": server.port,
                    "unix_socket_directories": folder,
                }.items()
            )
            server._run(
                "pg_ctl",
                "-D",
                str(server.data),
                "-l",
                str(folder / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            )
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.folder / "data"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of one database (psycopg2 driver)."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database, copied from ``template`` when given; returns its URL."""
        import psycopg2
        from psycopg2 import sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres"
        )
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()
        return self.url(name)

    def stop(self) -> None:
        """Shut the server down (if it runs) and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        """Run a server program as the server user; a failure shows its output and server log."""
        done = subprocess.run(
            [*self.prefix, str(self.bin_dir / program), *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            log = self.folder / "server.log"
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stdout}{done.stderr}"
                + (f"\nserver log:\n{log.read_text()}" if log.exists() else "")
            )
