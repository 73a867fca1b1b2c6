"""A real redis-server for tests, from Debian's redis-server package, on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from postgres_server import free_port


class Unavailable(RuntimeError):
    """No redis-server binary on this machine."""


@dataclass
class RedisServer:
    """One running server; ``url`` reaches database 0."""

    process: subprocess.Popen
    port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls) -> RedisServer:
        """Start a server with no persistence, on 127.0.0.1 only, and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise Unavailable("redis-server is not installed (apt-get install -y redis-server)")
        folder = Path(tempfile.mkdtemp(prefix="keel-redis-"))
        port = free_port()
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = cls(process, port, folder)
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    server.stop()
                    raise Unavailable(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
            finally:
                client.close()
        return server

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
