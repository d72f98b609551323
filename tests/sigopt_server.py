"""`sda serve` as a real process on loopback, for tests that talk to it with the sigopt client over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

SDA = Path(sys.executable).parent / "sda"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SigOptServer:
    """Start, stop (gracefully or with SIGKILL) and restart on the same storage."""

    def __init__(self, storage: str, token: str | None = None) -> None:
        self.storage = storage
        self.token = token or f"test-token-{uuid.uuid4().hex}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log: Path | None = None

    def start(self, log_dir: Path) -> SigOptServer:
        self.log = log_dir / f"serve-{self.port}-{uuid.uuid4().hex[:6]}.log"
        env = {**os.environ, "SDA_SERVE_TOKEN": self.token}
        self.process = subprocess.Popen([str(SDA), "serve", "--port", str(self.port), "--storage", self.storage],
                                        env=env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sda serve exited: {self.log.read_text()[-2000:]}")
            try:
                requests.get(f"{self.url}/v1/experiments", auth=(self.token, ""), timeout=2)
                return self
            except requests.ConnectionError:
                time.sleep(0.3)
        raise RuntimeError("sda serve did not start in 60 s")

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=30)
        self.process = None

    def connection(self):
        from sigopt import Connection

        return Connection(client_token=self.token, api_url=self.url)


def sqlite_server(tmp_path_factory, name: str):
    """A module fixture's body: `sda serve` on a new SQLite store, stopped after the module's tests."""
    folder = tmp_path_factory.mktemp(name)
    running = SigOptServer(f"sqlite:///{folder / 'optimizer.db'}").start(folder)
    yield running
    running.stop()
