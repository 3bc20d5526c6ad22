"""The OTLP/HTTP server as the launcher runs it, on the test database, for tests."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from django.db import connection

from monoenv_site import launcher
from tests.helpers import database_url
from tests.reliability.harness import free_port, listening, wait_for

ROOT = Path(__file__).resolve().parents[2]


class Server:
    def __init__(self, tmp_path: Path, **env: str):
        self.port = free_port()
        self.log_path = tmp_path / "otlp.log"
        settings_stub = type(
            "S", (), {"MONOENV_OTLP_HTTP_PORT": self.port, "MONOENV_HTTP_PORT": self.port}
        )
        command = launcher.otlp_command(settings_stub, tmp_path)
        command[command.index(f"0.0.0.0:{self.port}")] = f"127.0.0.1:{self.port}"
        command[command.index("--workers") + 1] = "1"
        full_env = {
            **os.environ,
            "DATABASE_URL": database_url(connection),
            "MONOENV_DATA_DIR": str(tmp_path / "data"),
            "MONOENV_TOKEN_RATE_LIMIT": "0",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *command[1:]], cwd=ROOT, env=full_env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for(lambda: self._answers(), timeout=60, what=f"the OTLP server\n{self.log()}")

    def _answers(self) -> bool:
        assert self.proc.poll() is None, self.log()
        return listening(self.port) and b"HTTP/1.1" in _get(self.port, "/login/")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        os.killpg(self.proc.pid, 9)
        self.proc.wait(30)


def _get(port: int, path: str) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            return sock.recv(64)
    except OSError:
        return b""
