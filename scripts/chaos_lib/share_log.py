"""Reads a `file://` cloud share's history straight from its folder (docs/format.md, format 2), independently
of Tiergate's own reader: every file version any commit ever upserted, with its content rebuilt from the
packs and every chunk checked against its SHA-256 id.

`tiergate get` shows only the namespace at the head; a version that was committed and later replaced
(a stub's holes uploaded as zeros, say, then overwritten by a good version) is visible only here.
"""
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field

OPERATION_KINDS = ("upsert", "delete", "rename")
ENTRY_KINDS = ("file", "directory")


class Corrupt(Exception):
    """A record, index segment or chunk that does not decode or verify."""


@dataclass
class Version:
    """One upsert of a file in the log."""
    sequence: int
    author: str
    path: str
    file_id: str
    size: int
    chunks: list = field(default_factory=list)  # (chunk id bytes, length)


class _Reader:
    def __init__(self, data):
        self.data, self.offset = data, 0

    def take(self, count):
        if self.offset + count > len(self.data):
            raise Corrupt("truncated")
        piece = self.data[self.offset:self.offset + count]
        self.offset += count
        return piece

    def unpack(self, form):
        return struct.unpack("<" + form, self.take(struct.calcsize("<" + form)))[0]

    def string(self):
        return self.take(self.unpack("I")).decode()


def _binary_record(data):
    """The upserted files of one format-2 record (the trailing xxh3-64 is not checked: stdlib has no xxh3)."""
    reader = _Reader(data[:-8])
    if reader.take(4) != b"TGC1":
        raise Corrupt("bad magic")
    reader.string()  # commit id
    sequence = reader.unpack("Q")
    author = reader.string()
    reader.string()  # author name
    reader.unpack("Q")  # time
    for _ in range(reader.unpack("I")):
        reader.string()  # packs
    versions = []
    for _ in range(reader.unpack("I")):
        kind, present = reader.unpack("B"), reader.unpack("B")
        path = reader.string()
        if present & 1:
            reader.string()  # rename source
        if not present & 2:
            continue
        entry_kind, entry_present = reader.unpack("B"), reader.unpack("B")
        file_id, size = reader.string(), reader.unpack("q")
        reader.unpack("I"), reader.unpack("q"), reader.unpack("I"), reader.unpack("I")  # mode, mtime, uid, gid
        chunks = [(reader.take(32), reader.unpack("I")) for _ in range(reader.unpack("I"))]
        if entry_present & 1:
            reader.string()  # fingerprint
        if entry_present & 2:
            for _ in range(reader.unpack("I")):
                reader.string(), reader.string()
        if entry_present & 4:
            reader.unpack("Q")
        if OPERATION_KINDS[kind] == "upsert" and ENTRY_KINDS[entry_kind] == "file":
            versions.append(Version(sequence, author, path, file_id, size, chunks))
    if reader.offset != len(reader.data):
        raise Corrupt("bytes after the last operation")
    return versions


def _json_record(data):
    record = json.loads(data)
    versions = []
    for operation in record.get("ops", []):
        entry = operation.get("entry")
        if operation.get("op") == "upsert" and entry and entry.get("k") == "file":
            chunks = [(bytes.fromhex(ref.split(":")[0]), int(ref.split(":")[1])) for ref in entry.get("c", [])]
            versions.append(Version(record["seq"], record.get("author", ""), operation["path"], entry.get("id", ""),
                                    entry["s"], chunks))
    return versions


class ShareHistory:
    """The share folder's log, index segments and packs."""

    def __init__(self, folder):
        self.folder = folder
        self.locations = {}  # chunk id -> (pack id, offset, length)
        index = os.path.join(folder, "index")
        for name in sorted(os.listdir(index)) if os.path.isdir(index) else []:
            with open(os.path.join(index, name), "rb") as segment:
                data = segment.read()
            if data[:8] != b"TGIDX001":
                raise Corrupt(f"index/{name}: bad magic")
            count = struct.unpack_from("<I", data, 40)[0]
            for i in range(count):
                base = 44 + 44 * i
                offset, length = struct.unpack_from("<QI", data, base + 32)
                self.locations[data[base:base + 32]] = (name, offset, length)

    def versions(self):
        """Every file upsert in sequence order."""
        log = os.path.join(self.folder, "log")
        found = []
        for name in sorted(os.listdir(log)):
            with open(os.path.join(log, name), "rb") as record:
                data = record.read()
            try:
                found += _binary_record(data) if data[:4] == b"TGC1" else _json_record(data)
            except (Corrupt, ValueError, KeyError, UnicodeDecodeError) as error:
                raise Corrupt(f"log/{name}: {error}") from None
        return found

    def content(self, version):
        """The version's bytes, every chunk verified; raises Corrupt naming what is wrong."""
        parts = []
        for chunk_id, length in version.chunks:
            if chunk_id not in self.locations:
                raise Corrupt(f"chunk {chunk_id.hex()[:12]} is in no index segment")
            pack, offset, stored = self.locations[chunk_id]
            with open(os.path.join(self.folder, "packs", pack[:2], pack), "rb") as packfile:
                packfile.seek(offset)
                data = packfile.read(stored)
            if len(data) != length or hashlib.sha256(data).digest() != chunk_id:
                raise Corrupt(f"chunk {chunk_id.hex()[:12]} in pack {pack[:12]} does not verify")
            parts.append(data)
        content = b"".join(parts)
        if len(content) != version.size:
            raise Corrupt(f"chunks add up to {len(content)} B, the entry says {version.size} B")
        return content
