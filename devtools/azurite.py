"""Start and stop Azurite (the Azure Storage emulator) for tests and the demo.

Why here and not in the tests only: ``make demo`` starts Azurite for the user exactly as the
test suite does, on free loopback ports, in memory, and stops it afterwards, so the demo and
the tests exercise the same real Table/Queue/Blob server. Azurite comes from the project's
``package.json`` (``npm ci``).

The account name and key below are Azurite's documented, public development credentials
(the same for every Azurite install); they open nothing but a local emulator.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from grading.errors import ServiceError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(ServiceError):
    """Azurite could not be started; the message says what to do."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Azurite:
    blob_port: int
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{DEV_ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{DEV_ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{DEV_ACCOUNT};"
        )


def _binary() -> str:
    local = PROJECT_ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if found:
        return found
    raise AzuriteError("Azurite is not installed: run `npm ci` in the project folder (make setup does it)")


def _wait_listening(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AzuriteError(f"Azurite exited at start-up with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise AzuriteError(f"Azurite did not listen on port {port} in time")


@contextlib.contextmanager
def running_azurite(timeout: float = 30.0) -> Iterator[Azurite]:
    """Azurite on free loopback ports, in memory; stopped (and its scratch folder removed) on exit.

    The scratch folder is only Azurite's working directory (its debug log, if any): with
    ``--inMemoryPersistence`` nothing is written to disk."""
    workdir = tempfile.mkdtemp(prefix="azurite-")
    for _attempt in range(3):
        ports = Azurite(free_port(), free_port(), free_port())
        if len({ports.blob_port, ports.queue_port, ports.table_port}) == 3:
            break
    cmd = [
        _binary(), "--silent", "--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry",
        "--blobHost", "127.0.0.1", "--blobPort", str(ports.blob_port),
        "--queueHost", "127.0.0.1", "--queuePort", str(ports.queue_port),
        "--tableHost", "127.0.0.1", "--tablePort", str(ports.table_port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)  # noqa: S603
    try:
        deadline = time.monotonic() + timeout
        for port in (ports.blob_port, ports.queue_port, ports.table_port):
            _wait_listening(port, proc, deadline)
        yield ports
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
