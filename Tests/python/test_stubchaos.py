"""A short seeded round of scripts/stubchaos: one server running `tiergate serve` with tiering on and its
endpoint mounted, a workload that tiers, reads, writes, maps, truncates, renames, links and unlinks stubs
through the endpoint and through the mount, and kills the daemon or its worker with SIGKILL. Every read
must return the model's bytes (or an error while nothing recalls), and the share must hold exactly what
was written.

The binary is $TIERGATE_BIN, else .build/debug/tiergate. The round takes two to three minutes on two cores.
"""
import os
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STUBCHAOS = os.path.join(REPO, "scripts", "stubchaos")
BINARY = os.environ.get("TIERGATE_BIN", os.path.join(REPO, ".build", "debug", "tiergate"))


def test_stubs_read_exactly_and_reach_the_share_exactly_through_kills(tmp_path):
    if not os.access(BINARY, os.X_OK):
        pytest.fail(f"no tiergate binary at {BINARY}: run `swift build` first, or set TIERGATE_BIN")
    command = [sys.executable, STUBCHAOS, "--seed", "13", "--ops", "150", "--kill-every", "30",
               "--cross-path-delay", "1.1", "--bin", BINARY, "--workdir", str(tmp_path / "stubchaos")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        process.terminate()  # SIGTERM: the harness then stops its daemon and unmounts
        output, _ = process.communicate(timeout=60)
        pytest.fail(f"scripts/stubchaos did not finish in 420 s:\n{output}", pytrace=False)
    summary = [line for line in output.splitlines() if line.startswith("stubchaos: seed=")]
    if process.returncode != 0 or not summary:
        pytest.fail(f"scripts/stubchaos exited with {process.returncode}:\n{output}", pytrace=False)
