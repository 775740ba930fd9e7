"""The seeded workload on the servers' endpoint folders, and the model of what it wrote.

The daemons change the same folders while the workload runs, so the workload never assumes it knows
what a folder holds: it picks among what is there now, and every step that removes or replaces
content captures that content atomically first (an exchange or a rename out of the endpoint, or a
read through the descriptor it is about to modify) and records it as *superseded*. A write that was
never superseded that way must survive somewhere; content that appears without having been produced
by any step is *foreign*. Content is unique per step (it starts with a header naming the step), so a
SHA-256 identifies the step that wrote it; only `copy` and `twin` repeat a content on purpose (to make
servers deduplicate the same chunks at the same time), and for them the model errs on the lenient side.
"""
import ctypes
import hashlib
import json
import os
import random
import shutil
import stat
import time
from dataclasses import asdict, dataclass

RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
AT_FDCWD = -100
EMPTY = hashlib.sha256(b"").hexdigest()
TEMP_PREFIX = ".~edit-"  # not on Tiergate's skip list: the temp file of an atomic replace may sync, and is modelled
_libc = ctypes.CDLL(None, use_errno=True)

OPERATIONS = {"create": 18, "overwrite": 12, "replace": 10, "append": 9, "truncate": 4, "rename": 8, "rename_dir": 3,
              "delete": 8, "delete_dir": 1, "mkdir": 6, "rmdir": 3, "chmod": 5, "touch": 5, "concurrent": 6,
              "copy": 4, "twin": 3, "retype": 2}
# (probability, smallest, largest) in bytes: mostly small files, a few large ones.
SIZES = ((0.04, 0, 0), (0.60, 16, 16 << 10), (0.26, 16 << 10, 1 << 20), (0.08, 1 << 20, 4 << 20), (0.02, 4 << 20, 20 << 20))
FILE_MODES = (0o644, 0o600, 0o640, 0o664, 0o755, 0o700)
DIR_MODES = (0o755, 0o750, 0o700, 0o775)


def rename2(source, target, flags):
    """renameat2(2): NOREPLACE and EXCHANGE make each rename one atomic step, so the workload never
    silently clobbers something a daemon has just put in place."""
    if _libc.renameat2(AT_FDCWD, os.fsencode(source), AT_FDCWD, os.fsencode(target), flags) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error), source)


def sha256_of(fd):
    digest, offset = hashlib.sha256(), 0
    while chunk := os.pread(fd, 1 << 20, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def sha256_file(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return sha256_of(fd)
    finally:
        os.close(fd)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@dataclass
class Write:
    """One entry of the write log: the content a step left in a file."""
    op: int
    server: str
    path: str
    kind: str
    sha: str
    size: int
    time: float


class Model:
    """Every content state the workload produced, and which of them it removed itself."""

    def __init__(self, log_path):
        self.writes = []
        self.known = {EMPTY: "empty file"}  # sha -> what produced it (includes transient states)
        self.superseded = set()  # removed or replaced by a step that saw them
        self.displaced = set()   # a daemon replaced the inode while the step still held it open
        self.log = open(log_path, "a")
        self.started = time.time()

    def state(self, sha, what):
        self.known.setdefault(sha, what)

    def wrote(self, op, server, path, kind, sha, size):
        write = Write(op, server, path, kind, sha, size, round(time.time() - self.started, 3))
        self.writes.append(write)
        self.state(sha, f"op {op} {kind} on {server} at {path}")
        self.log.write(json.dumps(asdict(write)) + "\n")
        self.log.flush()

    def must_survive(self):
        """The writes nobody superseded. Empty files are left out: all empty files share one hash."""
        return {w.sha: w for w in self.writes if w.size and w.sha not in self.superseded and w.sha not in self.displaced}


class Workload:
    """Seeded steps on random servers' folders; `step` returns a one-line description for the op log."""

    def __init__(self, roots, trash, seed, model):
        self.roots, self.trash, self.seed, self.model = roots, trash, seed, model
        self.random = random.Random(seed)
        self.op = 0
        self.trash_seq = 0

    # Picking among what is there now.

    def scan(self, server):
        root, files, dirs = self.roots[server], [], [""]
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            rel = "" if rel == "." else rel
            if not rel:
                dirnames[:] = [d for d in dirnames if d != ".tiergate"]
            dirs += [os.path.join(rel, d) for d in dirnames]
            files += [os.path.join(rel, f) for f in filenames if not f.startswith(TEMP_PREFIX)]
        return sorted(files), sorted(dirs)

    def new_name(self, directory=False):
        if directory:
            return f"{self.random.choice(['d', 'dir ', 'Ordner-'])}{self.op}"
        stem = self.random.choice(["f", "report ", "données-", "notes."])
        return f"{stem}{self.op}{self.random.choice(['.txt', '.bin', '.tar.gz', '.md', ''])}"

    def size(self):
        draw = self.random.random()
        for probability, smallest, largest in SIZES:
            if draw < probability:
                return self.random.randint(smallest, largest)
            draw -= probability
        return 0

    def content(self, server, path, size, what="write"):
        """Deterministic, unique content: a header naming the step, then seeded random bytes."""
        if size == 0:
            return b""
        header = f"<chaos {what} op {self.op} on {server}: {path}>\n".encode()
        body = random.Random(self.seed * 1_000_003 + self.op).randbytes(max(0, size - len(header)))
        return header + body

    # Capturing what a step removes.

    def capture(self, path):
        """Moves `path` out of the endpoint in one rename, then records everything it held as superseded.
        Hashing after the move is what makes this exact: a daemon can replace the item until the rename, not after."""
        self.trash_seq += 1
        target = os.path.join(self.trash, str(self.trash_seq))
        rename2(path, target, RENAME_NOREPLACE)
        if os.path.isdir(target) and not os.path.islink(target):
            for dirpath, _, filenames in os.walk(target):
                for name in filenames:
                    self.model.superseded.add(sha256_file(os.path.join(dirpath, name)))
            shutil.rmtree(target)
        else:
            self.model.superseded.add(sha256_file(target))
            os.unlink(target)

    def finish(self, fd, server, rel, kind):
        """Records the content now in the file; if a daemon replaced the inode while we held it open (it has
        no link left), the write went to an orphan, which is a race the workload cannot attribute: counted apart."""
        sha = sha256_of(fd)
        self.model.wrote(self.op, server, rel, kind, sha, os.fstat(fd).st_size)
        if os.fstat(fd).st_nlink == 0:
            self.model.displaced.add(sha)
        return sha

    # The steps.

    def step(self, server):
        self.op += 1
        name = self.random.choices(list(OPERATIONS), weights=list(OPERATIONS.values()))[0]
        files, dirs = self.scan(server)
        try:
            return getattr(self, "do_" + name)(server, files, dirs)
        except OSError as error:  # the tree changed under the step (a daemon applied a commit): it stops there
            return f"{name}: skipped ({error.strerror}: {os.path.relpath(error.filename or '?', self.roots[server])})"

    def pick_dir(self, dirs, max_depth=3):
        return self.random.choice([d for d in dirs if d.count("/") < max_depth] or [""])

    def do_create(self, server, files, dirs):
        rel = os.path.join(self.pick_dir(dirs), self.new_name())
        data = self.content(server, rel, self.size())
        self.write_new(server, rel, data, "create")
        return f"create {rel} ({len(data)} B)"

    def do_overwrite(self, server, files, dirs, rel=None):
        """In place: read what is there through the descriptor, truncate, write the new content."""
        if rel is None and not files:
            return self.do_create(server, files, dirs)
        rel = rel or self.random.choice(files)
        fd = os.open(os.path.join(self.roots[server], rel), os.O_RDWR | os.O_NOFOLLOW)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return f"overwrite {rel}: skipped (not a file)"
            self.model.superseded.add(sha256_of(fd))
            data = self.content(server, rel, self.size())
            os.ftruncate(fd, 0)
            write_all(fd, data)
            self.finish(fd, server, rel, "overwrite")
        finally:
            os.close(fd)
        return f"overwrite {rel} ({len(data)} B)"

    def do_replace(self, server, files, dirs, rel=None):
        """Atomic replace as editors do it: write a temp file, then swap it in. The swap is an exchange, so the
        replaced inode lands on the temp name and is captured exactly."""
        rel = rel or (self.random.choice(files) if files and self.random.random() < 0.8 else
                      os.path.join(self.pick_dir(dirs), self.new_name()))
        target = os.path.join(self.roots[server], rel)
        temp = os.path.join(os.path.dirname(target), f"{TEMP_PREFIX}{self.op}")
        data = self.content(server, rel, self.size())
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            write_all(fd, data)
            try:
                os.fchmod(fd, stat.S_IMODE(os.lstat(target).st_mode))
            except FileNotFoundError:
                pass
            sha = sha256_of(fd)
        finally:
            os.close(fd)
        self.model.state(sha, f"temp file of op {self.op} on {server}")
        try:
            rename2(temp, target, RENAME_EXCHANGE)
            self.capture(temp)
        except FileNotFoundError:
            try:
                rename2(temp, target, RENAME_NOREPLACE)
            except OSError:
                self.capture(temp)
                raise
        self.model.wrote(self.op, server, rel, "replace", sha, len(data))
        return f"replace {rel} ({len(data)} B)"

    def do_append(self, server, files, dirs):
        if not files:
            return self.do_create(server, files, dirs)
        rel = self.random.choice(files)
        fd = os.open(os.path.join(self.roots[server], rel), os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW)
        try:
            self.model.superseded.add(sha256_of(fd))
            data = self.content(server, rel, self.random.randint(1, 64 << 10), "append")
            write_all(fd, data)
            self.finish(fd, server, rel, "append")
        finally:
            os.close(fd)
        return f"append {rel} (+{len(data)} B)"

    def do_truncate(self, server, files, dirs):
        """Shortens a file, never below 64 bytes, so the result keeps a unique header."""
        if not files:
            return self.do_create(server, files, dirs)
        rel = self.random.choice(files)
        fd = os.open(os.path.join(self.roots[server], rel), os.O_RDWR | os.O_NOFOLLOW)
        try:
            size = os.fstat(fd).st_size
            if size <= 65:
                return f"truncate {rel}: skipped ({size} B)"
            self.model.superseded.add(sha256_of(fd))
            length = self.random.randint(64, size - 1)
            os.ftruncate(fd, length)
            self.finish(fd, server, rel, "truncate")
        finally:
            os.close(fd)
        return f"truncate {rel} to {length} B"

    def do_rename(self, server, files, dirs):
        if not files:
            return self.do_create(server, files, dirs)
        source = self.random.choice(files)
        target = os.path.join(self.pick_dir(dirs), self.random.choice([self.new_name(), os.path.basename(source)]))
        root = self.roots[server]
        rename2(os.path.join(root, source), os.path.join(root, target), RENAME_NOREPLACE)
        return f"rename {source} -> {target}"

    def do_rename_dir(self, server, files, dirs):
        candidates = [d for d in dirs if d]
        if not candidates:
            return self.do_mkdir(server, files, dirs)
        source = self.random.choice(candidates)
        parents = [d for d in dirs if d.count("/") < 2 and d != source and not d.startswith(source + "/")]
        target = os.path.join(self.random.choice(parents or [""]), self.new_name(directory=True))
        root = self.roots[server]
        rename2(os.path.join(root, source), os.path.join(root, target), RENAME_NOREPLACE)
        return f"rename dir {source} -> {target}"

    def do_delete(self, server, files, dirs):
        if not files:
            return self.do_create(server, files, dirs)
        rel = self.random.choice(files)
        self.capture(os.path.join(self.roots[server], rel))
        return f"delete {rel}"

    def do_delete_dir(self, server, files, dirs):
        candidates = [d for d in dirs if d]
        if not candidates:
            return self.do_mkdir(server, files, dirs)
        rel = self.random.choice(candidates)
        self.capture(os.path.join(self.roots[server], rel))
        return f"delete dir {rel}"

    def do_mkdir(self, server, files, dirs):
        rel = os.path.join(self.pick_dir(dirs, max_depth=3), self.new_name(directory=True))
        os.mkdir(os.path.join(self.roots[server], rel))
        return f"mkdir {rel}"

    def do_rmdir(self, server, files, dirs):
        candidates = [d for d in dirs if d]
        if not candidates:
            return self.do_mkdir(server, files, dirs)
        rel = self.random.choice(candidates)
        os.rmdir(os.path.join(self.roots[server], rel))  # refused when not empty: then nothing happens
        return f"rmdir {rel}"

    def do_chmod(self, server, files, dirs):
        if files and (self.random.random() < 0.8 or len(dirs) == 1):
            rel, mode = self.random.choice(files), self.random.choice(FILE_MODES)
        else:
            rel, mode = self.random.choice(dirs[1:] or [""]), self.random.choice(DIR_MODES)
            if not rel:
                return "chmod: skipped (no directory)"
        os.chmod(os.path.join(self.roots[server], rel), mode, follow_symlinks=False)
        return f"chmod {rel} {mode:o}"

    def do_touch(self, server, files, dirs):
        if not files:
            return self.do_create(server, files, dirs)
        rel = self.random.choice(files)
        when = None if self.random.random() < 0.5 else \
            time.time_ns() - self.random.randint(0, 30 * 86400) * 10**9 - self.random.randint(0, 10**9 - 1)
        path = os.path.join(self.roots[server], rel)
        if when is None:
            os.utime(path, follow_symlinks=False)
        else:
            os.utime(path, ns=(when, when), follow_symlinks=False)
        return f"touch {rel}"

    def do_concurrent(self, server, files, dirs):
        """The same path edited on two servers back to back: both versions must survive (or one must have
        seen the other, which the capture of its base records)."""
        other = self.random.choice([s for s in self.roots if s != server] or [server])
        shared = [f for f in files if os.path.isfile(os.path.join(self.roots[other], f))]
        if not shared or other == server:
            return self.do_overwrite(server, files, dirs)
        rel = self.random.choice(shared)
        first = self.do_overwrite(server, files, dirs, rel)
        self.op += 1
        second = (self.do_replace if self.random.random() < 0.5 else self.do_overwrite)(other, [rel], dirs, rel)
        return f"concurrent on {server} and {other}: {first}; {second}"

    def do_copy(self, server, files, dirs):
        """cp of an existing file to a new name, here or on another server: its chunks are already in the share."""
        if not files:
            return self.do_create(server, files, dirs)
        source = self.random.choice(files)
        with open(os.path.join(self.roots[server], source), "rb") as file:
            data = file.read()
        other = self.random.choice(list(self.roots))
        _, other_dirs = self.scan(other)
        rel = os.path.join(self.pick_dir(other_dirs), self.new_name())
        self.write_new(other, rel, data, "copy")
        return f"copy {source} -> {other}:{rel} ({len(data)} B)"

    def do_twin(self, server, files, dirs):
        """The same new content written on two servers at once, at one path or two: both upload the same chunks."""
        other = self.random.choice([s for s in self.roots if s != server] or [server])
        shared = sorted(set(dirs) & set(self.scan(other)[1]))
        rel = os.path.join(self.pick_dir(shared), self.new_name())
        other_rel = rel if self.random.random() < 0.5 else os.path.join(os.path.dirname(rel), f"twin-{self.op}.bin")
        data = self.content("both", rel, self.random.randint(256 << 10, 8 << 20), "twin")
        self.write_new(server, rel, data, "twin")
        self.write_new(other, other_rel, data, "twin")
        return f"twin {rel} on {server} and {other_rel} on {other} ({len(data)} B)"

    def do_retype(self, server, files, dirs):
        """A file becomes a directory of the same name or an empty directory becomes a file: kind conflicts."""
        root = self.roots[server]
        if files and self.random.random() < 0.6:
            rel = self.random.choice(files)
            self.capture(os.path.join(root, rel))
            os.mkdir(os.path.join(root, rel))
            self.write_new(server, os.path.join(rel, self.new_name()), self.content(server, rel, self.size()), "create")
            return f"retype file {rel} -> directory"
        candidates = [d for d in dirs if d]
        if not candidates:
            return self.do_mkdir(server, files, dirs)
        rel = self.random.choice(candidates)
        os.rmdir(os.path.join(root, rel))  # refused when not empty: then nothing happens
        self.write_new(server, rel, self.content(server, rel, self.size()), "create")
        return f"retype directory {rel} -> file"

    def write_new(self, server, rel, data, kind):
        fd = os.open(os.path.join(self.roots[server], rel), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            write_all(fd, data)
            self.finish(fd, server, rel, kind)
        finally:
            os.close(fd)

    def large_write(self, server, on_started=None):
        """A 4-20 MiB file written in 2 MiB pieces; every prefix is a state a daemon may legitimately see.
        `on_started` runs after the first piece (the harness kills the daemon there)."""
        self.op += 1
        _, dirs = self.scan(server)
        rel = os.path.join(self.pick_dir(dirs), self.new_name())
        data = self.content(server, rel, self.random.randint(4 << 20, 20 << 20))
        digest = hashlib.sha256()
        fd = os.open(os.path.join(self.roots[server], rel), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            for offset in range(0, len(data), 2 << 20):
                piece = data[offset: offset + (2 << 20)]
                write_all(fd, piece)
                digest.update(piece)
                self.model.state(digest.hexdigest(), f"prefix of op {self.op} on {server}")
                if offset == 0 and on_started:
                    on_started()
                time.sleep(0.02)
            self.finish(fd, server, rel, "large create")
        finally:
            os.close(fd)
        return f"large create {rel} ({len(data)} B)"
