"""Short seeded rounds of scripts/chaos: three servers running `tiergate serve` on one cloud share, a
workload of edits, renames, deletes and conflicts, daemons killed with SIGKILL and restarted, and on S3
(moto, SeaweedFS and a one-node Ceph RGW) a quarter of the requests broken by a proxy. The servers must end
identical with no write lost.

The binary is $TIERGATE_BIN, else .build/debug/tiergate. Each round takes one to two minutes on two cores
(under a minute on the real stores). A store that is not installed fails its round, naming what to install.
"""
import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHAOS = os.path.join(REPO, "scripts", "chaos")
BINARY = os.environ.get("TIERGATE_BIN", os.path.join(REPO, ".build", "debug", "tiergate"))


def run_chaos(workdir, *arguments):
    """Runs one round; the work directory (logs, op log, write log) stays under pytest's tmp_path."""
    if not os.access(BINARY, os.X_OK):
        pytest.fail(f"no tiergate binary at {BINARY}: run `swift build` first, or set TIERGATE_BIN")
    command = [sys.executable, CHAOS, "--servers", "3", "--ops", "300", "--kill-every", "40", "--quiet-timeout", "60",
               "--bin", BINARY, "--workdir", str(workdir), *arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=280)
    except subprocess.TimeoutExpired:
        process.terminate()  # SIGTERM, not SIGKILL: the harness then stops its daemons and S3 server
        output, _ = process.communicate(timeout=60)
        pytest.fail(f"scripts/chaos {' '.join(arguments)} did not finish in 280 s:\n{output}", pytrace=False)
    summary = [line for line in output.splitlines() if line.startswith("chaos: backend=")]
    if process.returncode != 0 or not summary:
        pytest.fail(f"scripts/chaos {' '.join(arguments)} exited with {process.returncode}:\n{output}", pytrace=False)


def test_servers_converge_without_lost_writes_through_kills_on_a_file_share(tmp_path):
    run_chaos(tmp_path / "chaos", "--seed", "11", "--backend", "file")


def test_servers_converge_without_lost_writes_through_kills_and_s3_faults(tmp_path):
    if importlib.util.find_spec("moto") is None:
        pytest.fail("moto is required for the S3 chaos round: pip install 'moto[server]' (scripts/setup installs it)")
    run_chaos(tmp_path / "chaos", "--seed", "12", "--backend", "s3", "--fault-rate", "0.25")


@pytest.mark.parametrize("backend, seed", [("seaweedfs", 13), ("rgw", 14)])
def test_servers_converge_without_lost_writes_through_kills_and_faults_on_a_real_store(tmp_path, backend, seed):
    run_chaos(tmp_path / "chaos", "--seed", str(seed), "--backend", backend, "--fault-rate", "0.25")
