"""A short seeded round of scripts/stubchaos: one endpoint with tiering on, `tiergate serve` recalling stubs
through fanotify and serving the endpoint's FUSE mount, a workload of tiering, reads on both access paths,
writes into stubs (append, pwrite, mmap), renames, links, recalls and kill -9 of the daemon. Every read
must return exactly the written bytes or fail (never zeros), and the share must end with exactly the
written files.

The binary is $TIERGATE_BIN, else .build/debug/tiergate. The round takes about a minute on two cores.
It needs /dev/fuse and fanotify pre-content events (Linux >= 6.14, root, a work directory on ext4, xfs or
btrfs): without them it fails, naming what is missing.
"""
import os
import platform
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STUBCHAOS = os.path.join(REPO, "scripts", "stubchaos")
BINARY = os.environ.get("TIERGATE_BIN", os.path.join(REPO, ".build", "debug", "tiergate"))


def require_stub_access_paths():
    """Fails (never skips) when this machine cannot run both access paths under test."""
    missing = []
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse (the FUSE access path)")
    if os.geteuid() != 0:
        missing.append("root (fanotify pre-content events need CAP_SYS_ADMIN)")
    release = tuple(int(part) for part in platform.release().split("-")[0].split(".")[:2])
    if release < (6, 14):
        missing.append(f"Linux >= 6.14 for fanotify pre-content events (this is {platform.release()})")
    if missing:
        pytest.fail("the stub chaos round cannot run here: missing " + "; ".join(missing), pytrace=False)
    if not os.access(BINARY, os.X_OK):
        pytest.fail(f"no tiergate binary at {BINARY}: run `swift build` first, or set TIERGATE_BIN", pytrace=False)


def test_stubs_read_as_their_bytes_or_fail_through_kills_on_both_access_paths(tmp_path):
    require_stub_access_paths()
    command = [sys.executable, STUBCHAOS, "--seed", "21", "--ops", "120", "--kill-every", "40", "--quiet-timeout", "30",
               "--bin", BINARY, "--workdir", str(tmp_path / "stubchaos")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        process.terminate()  # SIGTERM: the harness then kills its daemon and detaches its mount
        output, _ = process.communicate(timeout=60)
        pytest.fail(f"scripts/stubchaos did not finish in 240 s:\n{output}", pytrace=False)
    summary = [line for line in output.splitlines() if line.startswith("stubchaos: seed=")]
    if process.returncode != 0 or not summary:
        pytest.fail(f"scripts/stubchaos exited with {process.returncode}:\n{output}", pytrace=False)
