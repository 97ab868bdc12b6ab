"""A private PostgreSQL server for tests: its own data directory in a temporary folder, a unix socket only.

`PostgresServer().start()` runs initdb and pg_ctl from the newest `/usr/lib/postgresql/<version>/bin` (Debian's
`postgresql` package; the Makefile installs it) or else from PATH, listening on no TCP address, only on a
socket in the temporary folder, trust authentication. PostgreSQL refuses to run as root: as root, the folder
is given to `nobody` and the server programs run as that user (subprocess's `user=`, no su/sudo needed).
`stop()` stops the server and deletes the folder. Missing binaries raise `PostgresMissing` naming what is
missing and where it was looked for: the tests that need the server fail, they do not skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

PROGRAMS = ("initdb", "pg_ctl", "postgres")
UNPRIVILEGED_USER = "nobody"
PORT = 5432  # only names the socket file: the folder is private, so no other server can clash


class PostgresMissing(RuntimeError):
    """The PostgreSQL server programs are not installed."""


def find_binaries() -> Path:
    """The folder holding initdb, pg_ctl and postgres: the highest Debian version, else the one on PATH."""

    def version(folder: str) -> tuple[int, ...]:
        found = re.search(r"/postgresql/([\d.]+)/bin$", folder)
        return tuple(int(part) for part in found.group(1).split(".")) if found else ()

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for folder in candidates:
        if all(os.access(Path(folder, program), os.X_OK) for program in PROGRAMS):
            return Path(folder)
    looked = ", ".join(candidates) or "no /usr/lib/postgresql/*/bin, no pg_ctl on PATH"
    raise PostgresMissing(
        f"PostgreSQL server programs {', '.join(PROGRAMS)} not found (looked in: {looked}); the journal's "
        "PostgreSQL tests need them: install Debian's 'postgresql' package (`make debian-packages` does)"
    )


class PostgresServer:
    """One throwaway PostgreSQL cluster; `conninfo(dbname)` connects to it over its unix socket."""

    def __init__(self) -> None:
        self.bin = find_binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="wirebook-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.running = False
        self._as: dict[str, object] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def _run(self, *args: str, timeout: float = 60) -> None:
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.folder), "LC_ALL": "C", "TZ": "UTC"}
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **self._as,  # type: ignore[arg-type]
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} exited with {done.returncode}:\n{done.stdout}{done.stderr}\nserver log:\n{log}"
            )

    def start(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-c listen_addresses='' -k {self.folder} -p {PORT}"
            # the tests kill the client, never this server: its own fsyncs only cost time here
            " -c fsync=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        self.running = True
        return self

    def stop(self) -> None:
        try:
            if self.running:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
                self.running = False
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.folder} port={PORT} user=postgres dbname={dbname}"

    def create_database(self, name: str) -> str:
        """A new empty database; its conninfo."""
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.conninfo(name)
