"""Fixtures shared by the Python suites: a FileREST emulator on a free loopback port."""

import base64
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

EMULATOR = os.path.join(os.path.dirname(__file__), "..", "FileRESTEmulator", "filerest_emulator.py")


@dataclass
class Emulator:
    """A running emulator: its account endpoint (http://127.0.0.1:PORT/ACCOUNT) and credentials."""

    url: str
    account: str
    key: str

    @property
    def credential(self):
        return {"account_name": self.account, "account_key": self.key}


@pytest.fixture(scope="session")
def emulator():
    account = "tiergatetest"
    key = base64.b64encode(os.urandom(64)).decode()
    # The emulator exits when its stdin closes, so it cannot outlive a pytest run that dies.
    process = subprocess.Popen([sys.executable, EMULATOR, "--port", "0", "--account", account, "--key", key,
                                "--exit-with-stdin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # the emulator prints its address once it listens
    if not line.startswith("FileREST emulator listening on "):
        process.kill()
        pytest.fail(f"the FileREST emulator did not start (said {line!r})")
    try:
        yield Emulator(line.rsplit(" ", 1)[1].strip(), account, key)
    finally:
        process.stdin.close()
        process.terminate()
        process.wait(timeout=10)
