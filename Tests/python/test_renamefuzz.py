"""Seeded rounds of scripts/renamefuzz: two servers on one share, one reorganizing its tree (renames, swaps,
a file put where a folder was and the reverse) while the other changes nothing. After every round both
trees are the changing server's, with no conflict; every fourth round `get` and `share verify` agree. Once
with one-shot `tiergate sync` passes, once with both servers running `tiergate serve` the whole time.

The binary is $TIERGATE_BIN, else .build/debug/tiergate. Each case takes under a minute on two cores.
"""
import os
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RENAMEFUZZ = os.path.join(REPO, "scripts", "renamefuzz")
BINARY = os.environ.get("TIERGATE_BIN", os.path.join(REPO, ".build", "debug", "tiergate"))


@pytest.mark.parametrize("mode,seeds,rounds", [("sync", [1, 2, 3, 4], 16), ("serve", [1], 12)])
def test_a_reorganized_tree_arrives_as_it_is_without_conflicts(tmp_path, mode, seeds, rounds):
    if not os.access(BINARY, os.X_OK):
        pytest.fail(f"no tiergate binary at {BINARY}: run `swift build` first, or set TIERGATE_BIN")
    for seed in seeds:
        command = [sys.executable, RENAMEFUZZ, "--seed", str(seed), "--rounds", str(rounds), "--mode", mode,
                   "--bin", BINARY, "--workdir", str(tmp_path / f"{mode}-{seed}")]
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        summary = [line for line in result.stdout.splitlines() if line.startswith("renamefuzz: seed=")]
        if result.returncode != 0 or not summary or "held=yes" not in summary[-1]:
            pytest.fail(f"scripts/renamefuzz --seed {seed} --mode {mode} exited with {result.returncode}:\n{result.stdout}", pytrace=False)
