"""What is compared once the sync group is quiet (no workload, daemons stopped).

Relaxed on purpose, and why:
- Owners are not compared: everything runs as one user.
- Lost writes are looked for by content anywhere in the tree, not only under the written name or a
  conflict name of it: renames of a parent directory on another server legitimately move a write, and
  content is unique per write. A write present on some servers only is a divergence, not a lost write.
"""
import os
import stat
from collections import Counter

from .workload import sha256_file


def snapshot(root, with_content=True):
    """relative path -> (kind, size, sha256, permission bits, mtime ns) of files; directories carry their kind,
    permission bits and mtime. `.tiergate` at the root is Tiergate's own and left out."""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        if not rel:
            dirnames[:] = [d for d in dirnames if d != ".tiergate"]
        for name in dirnames + filenames:
            path = os.path.join(rel, name)
            try:
                info = os.lstat(os.path.join(root, path))
            except FileNotFoundError:
                continue
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISDIR(info.st_mode):
                tree[path] = ("dir", None, None, mode, info.st_mtime_ns)
            elif stat.S_ISREG(info.st_mode):
                sha = sha256_file(os.path.join(root, path)) if with_content else None
                tree[path] = ("file", info.st_size, sha, mode, info.st_mtime_ns)
            else:
                tree[path] = ("other", None, None, mode, None)
    return tree


FIELDS = ("kind", "size", "sha256", "mode", "mtime")


def describe(entry):
    if entry is None:
        return "missing"
    kind, size, sha, mode, mtime = entry
    if kind == "dir":
        return f"dir mode {mode:o} mtime {mtime}"
    if kind != "file":
        return f"{kind} mode {mode:o}"
    return f"{size} B sha256 {sha[:12]} mode {mode:o} mtime {mtime}"


def divergences(trees):
    """One line per path whose entry is not the same on every server, naming what differs, and how many
    paths differ in each field (a touch that never propagates is a different bug from a missing file)."""
    lines, by_field = [], Counter()
    for path in sorted(set().union(*(tree.keys() for tree in trees.values()))):
        variants = {}
        for server, tree in trees.items():
            variants.setdefault(tree.get(path), []).append(server)
        if len(variants) == 1:
            continue
        entries = [e for e in variants if e is not None]
        differs = ["presence"] if None in variants else []
        differs += [field for i, field in enumerate(FIELDS) if len({e[i] for e in entries}) > 1]
        by_field.update(differs)
        sides = "; ".join(f"{','.join(servers)}: {describe(entry)}" for entry, servers in variants.items())
        lines.append(f"divergence: {path}: {'/'.join(differs)} differ: {sides}")
    return lines, by_field


def lost_writes(model, trees):
    """Writes nobody superseded whose content is on no server."""
    present = {}
    for server, tree in trees.items():
        for path, entry in tree.items():
            if entry[0] == "file":
                present.setdefault(entry[2], []).append(f"{server}:{path}")
    lines = []
    for sha, write in sorted(model.must_survive().items(), key=lambda item: item[1].op):
        if sha not in present:
            lines.append(f"lost write: op {write.op} {write.kind} on {write.server} of {write.path} "
                         f"({write.size} B, sha256 {sha[:12]}, t+{write.time:.1f}s) is on no server")
    return lines


def foreign_content(model, trees, servers):
    """Files whose content no step produced; the first bytes usually name the step they came from."""
    lines = []
    for server, tree in trees.items():
        for path, entry in sorted(tree.items()):
            if entry[0] == "file" and entry[2] not in model.known:
                with open(os.path.join(servers[server], path), "rb") as file:
                    start = file.read(60)
                lines.append(f"foreign content: {server}:{path} ({entry[1]} B, sha256 {entry[2][:12]}) starts {start!r}")
    return lines
