"""Throwaway PostgreSQL and Redis servers started from the installed binaries.

Each server runs on a free port in a temporary directory, can be stopped, killed and
started again (fault injection), and is ended by its process id. When a binary is
missing, `MissingBinary` names it and says how to install it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


class MissingBinary(RuntimeError):
    """A server binary the tests need is not installed."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something listens on `port`; fail at once if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with code {process.returncode}")
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def postgres_bindir() -> Path:
    """The folder of the installed PostgreSQL binaries (initdb, pg_ctl, pg_dump, …)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(out.stdout.strip()))
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise MissingBinary(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found: install them "
        "(Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql`) "
        "or set TEST_DATABASE_URL to a database the tests may use."
    )


def _redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise MissingBinary(
            "redis-server was not found: install it (Debian/Ubuntu: `apt-get install "
            "redis-server`; macOS: `brew install redis`) or set TEST_REDIS_URL."
        )
    return path


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in a temporary directory; `url` points at its `postgres` db."""

    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=postgres_bindir)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vb-pg-")))

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        # initdb and pg_ctl refuse to run as root.
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    def init(self) -> None:
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        out = self._run(
            "initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust",
            "--no-sync", "-E", "UTF8",
        )
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed: {out.stderr}")

    def start(self) -> None:
        options = (
            # fsync off: fast, and still durable across a crash of the server process
            # (only an OS crash loses data); synchronous_commit stays on for that.
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off "
            "-c max_connections=300 -c shared_buffers=64MB"
        )
        out = self._run(
            "pg_ctl", "-D", str(self.datadir), "-o", options, "-l",
            str(self.root / "server.log"), "-w", "-t", "30", "start",
        )
        if out.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl start failed: {out.stderr}\n{log}")

    def pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends, as a crash would (a start recovers)."""
        pid = self.pid()
        if pid is None:
            return
        children = subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        for victim in [pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class RedisServer:
    """A `redis-server` with no persistence on a free port."""

    port: int = field(default_factory=free_port)
    binary: str = field(default_factory=_redis_server)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vb-redis-")))
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.root),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    stop = kill

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
