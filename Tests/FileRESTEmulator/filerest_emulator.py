#!/usr/bin/env python3
"""A small Azure Files (FileREST) emulator for Tiergate's tests.

No public emulator serves Azure Files (Azurite covers blob, queue and table only), so the project
ships this one. It implements the operations Tiergate and the official SDK use, verifies SharedKey
and SAS signatures the way the service derives them, and answers with the service's status codes and
XML error bodies:

  shares       Create / Get Properties / Delete Share, List Shares
  directories  Create / Get Properties / Delete Directory, List Directories and Files, Rename Directory
  files        Create File, Put Range (update, clear), Get File (Range / x-ms-range), Get File Properties,
               Set File Properties (resize), Set Metadata, Delete File, Lease File, Rename File

Like the service, names are case-insensitive but case-preserving, trailing dots are trimmed unless
`x-ms-allow-trailing-dot: true`, and names with characters XML cannot carry are listed percent-encoded.
Both URL styles work: `http://host/<share>/...` and the emulator style `http://host/<account>/<share>/...`
that the SDK uses for loopback endpoints. State lives in memory.

Usage: filerest_emulator.py --port N --account NAME --key BASE64 [--host 127.0.0.1]
With --port 0 the system picks a free port. Once listening, one line goes to stdout:
  FileREST emulator listening on http://HOST:PORT/ACCOUNT
Tests may inject faults through the unauthenticated, loopback-only
`/_emulator/fail?count=N&status=S&code=C[&operation=RenameFile][&after=1]`: the next N service requests
(of that operation, if named) fail with that status and error code (503 ServerBusy by default); with
`after=1` the operation is carried out first and only its answer is lost, as when a connection drops.
"""

import argparse
import base64
import datetime
import email.utils
import hashlib
import hmac
import itertools
import os
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape as xml_escape, quoteattr

MAX_RANGE_BYTES = 4 * 1024 * 1024
MAX_LIST_RESULTS = 5000
MAX_FILE_BYTES = 4 * 1024 ** 4
CLOCK_SKEW = datetime.timedelta(minutes=15)
INVALID_NAME_CHARACTERS = set('"\\/:|<>*?')
SUPPORTED_VERSION = "2026-10-06"
ENCRYPTION_SCOPE_VERSION = "2020-12-06"  # account SAS strings to sign include `ses` from this version on


class ServiceError(Exception):
    """An error the service answers with: status, error code, message and extra headers."""

    def __init__(self, status, code, message, headers=None, detail=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.detail = detail


# ---------------------------------------------------------------------------------------------------
# SharedKey: the service sorts x-ms-* header names with its own collation (the one the SDK emulates in
# _storage_header_sort): '-' and '\'' are ignored at the first level, '_' sorts before digits, digits
# before letters, letters case-insensitively. Only the printable ASCII that can occur in header names
# has a weight.

_PRIMARY_WEIGHTS = {}
for _char, _weight in zip("!#$%&*+./", (0x71C, 0x71F, 0x721, 0x723, 0x725, 0x72D, 0x803, 0x733, 0x0)):
    _PRIMARY_WEIGHTS[_char] = _weight
_PRIMARY_WEIGHTS.update({"^": 0x743, "_": 0x744, "`": 0x748, "|": 0x74C, "~": 0x750})
for _char, _weight in zip("0123456789", (0xD03, 0xD1A, 0xD1C, 0xD1E, 0xD20, 0xD22, 0xD24, 0xD26, 0xD28, 0xD2A)):
    _PRIMARY_WEIGHTS[_char] = _weight
_LETTER_WEIGHTS = (0xE02, 0xE09, 0xE0A, 0xE1A, 0xE21, 0xE23, 0xE25, 0xE2C, 0xE32, 0xE35, 0xE36, 0xE48, 0xE51,
                   0xE70, 0xE7C, 0xE7E, 0xE89, 0xE8A, 0xE91, 0xE99, 0xE9F, 0xEA2, 0xEA4, 0xEA6, 0xEA7, 0xEA9)
for _index, _weight in enumerate(_LETTER_WEIGHTS):
    _PRIMARY_WEIGHTS[chr(ord("a") + _index)] = _weight
    _PRIMARY_WEIGHTS[chr(ord("A") + _index)] = _weight
_SECONDARY_WEIGHTS = {"'": 0x8012, "-": 0x8212}


def _weight(level, text, index):
    if index >= len(text):
        return 0x1  # end of string
    table = _PRIMARY_WEIGHTS if level == 0 else _SECONDARY_WEIGHTS
    if ord(text[index]) > 0x7F:
        raise ValueError("a header name has a non-ASCII character")
    return table.get(text[index], 0x0)


def header_name_compare(lhs, rhs):
    """-1, 0 or 1: the order of two lowercased header names in the canonicalized headers."""
    level, i, j = 0, 0, 0
    while level < 2:
        if level == 1 and i != j:
            return -1 if i > j else 1
        w1, w2 = _weight(level, lhs, i), _weight(level, rhs, j)
        if w1 == 0x1 and w2 == 0x1:
            level, i, j = level + 1, 0, 0
        elif w1 == w2:
            i, j = i + 1, j + 1
        elif w1 == 0:
            i += 1
        elif w2 == 0:
            j += 1
        else:
            return -1 if w1 < w2 else 1
    return 0


def sort_header_names(names):
    import functools
    return sorted(names, key=functools.cmp_to_key(header_name_compare))


def shared_key_string_to_sign(method, raw_path, query_pairs, headers, account):
    """The string the service signs for a SharedKey request (version 2015-02-21 and later)."""

    def header(name):
        return headers.get(name, "")

    content_length = header("content-length")
    if content_length == "0":
        content_length = ""  # since 2015-02-21 a zero length signs as empty
    slots = [method, header("content-encoding"), header("content-language"), content_length,
             header("content-md5"), header("content-type"), header("date"), header("if-modified-since"),
             header("if-match"), header("if-none-match"), header("if-unmodified-since"), header("range")]
    x_ms = [name for name in headers if name.startswith("x-ms-")]
    canonical_headers = "".join(f"{name}:{headers[name]}\n" for name in sort_header_names(x_ms))
    resource = "/" + account + raw_path
    grouped = {}
    for name, value in query_pairs:
        grouped.setdefault(name.lower(), []).append(value)
    for name in sorted(grouped):
        resource += "\n" + name + ":" + ",".join(sorted(grouped[name]))
    return "\n".join(slots) + "\n" + canonical_headers + resource


def sign(key, string_to_sign):
    return base64.b64encode(hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).digest()).decode()


# ---------------------------------------------------------------------------------------------------
# The namespace: shares of directory trees. Lookups fold case; nodes keep the name they were created with.

_file_ids = itertools.count(13835128424026341376)


def fold(name):
    return name.casefold()


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def http_date(moment):
    return email.utils.format_datetime(moment, usegmt=True)


def iso_time(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


class Node:
    def __init__(self, name, is_directory):
        self.name = name
        self.is_directory = is_directory
        self.children = {} if is_directory else None
        self.data = None if is_directory else bytearray()
        self.metadata = {}
        self.content_type = "application/octet-stream"
        self.file_id = str(next(_file_ids))
        self.created = now()
        self.lease_id = None
        self.touch()

    def touch(self):
        self.modified = now()
        self.etag = '"0x%X"' % time.time_ns()

    def lookup(self, name):
        return self.children.get(fold(name))


class Share:
    def __init__(self, name):
        self.name = name
        self.root = Node("", True)
        self.metadata = {}


class Namespace:
    """All shares. One lock serializes changes: simple, and plenty for tests."""

    def __init__(self):
        self.lock = threading.RLock()
        self.shares = {}


# ---------------------------------------------------------------------------------------------------
# Parsing helpers.

def validate_share_name(name):
    ok = 3 <= len(name) <= 63 and all(c.islower() or c.isdigit() or c == "-" for c in name) \
        and name[0] != "-" and name[-1] != "-" and "--" not in name and name.isascii()
    if not ok:
        raise ServiceError(400, "InvalidResourceName", "The specifed resource name contains invalid characters.")


def validate_component(name):
    if not name or name in (".", "..") or len(name) > 255 \
            or any(c in INVALID_NAME_CHARACTERS or ord(c) < 0x20 for c in name):
        raise ServiceError(400, "InvalidResourceName", "The specifed resource name contains invalid characters.")


def parse_range(value, size):
    """(start, end-inclusive) of a `bytes=a-b` or `bytes=a-` range, or raises InvalidRange/InvalidHeaderValue."""
    if not value.startswith("bytes="):
        raise ServiceError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format.")
    first, _, last = value[len("bytes="):].partition("-")
    try:
        start = int(first)
        end = int(last) if last else None
    except ValueError:
        raise ServiceError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format.")
    if start < 0 or (end is not None and end < start):
        raise ServiceError(416, "InvalidRange", "The range specified is invalid for the current size of the resource.",
                           {"Content-Range": f"bytes */{size}"})
    return start, end


def parse_sas_time(value):
    for pattern in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return datetime.datetime.strptime(value, pattern).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            pass
    raise ServiceError(403, "AuthenticationFailed", f"The signed time '{value}' is not in a valid format.")


XML_INVALID = set(range(0x00, 0x20)) - {0x09, 0x0A, 0x0D} | {0xFFFE, 0xFFFF}


def encoded_name_element(tag, name):
    """`<Name>name</Name>`, or the percent-encoded form the service uses for names XML cannot carry."""
    if any(ord(c) in XML_INVALID or 0xD800 <= ord(c) <= 0xDFFF for c in name):
        quoted = urllib.parse.quote(name.encode("utf-8", "surrogatepass"), safe="")
        return f'<{tag} Encoded="true">{quoted}</{tag}>'
    return f"<{tag}>{xml_escape(name)}</{tag}>"


# ---------------------------------------------------------------------------------------------------
# Authorization.

# Operation name -> (account SAS resource type, permissions any one of which allows it).
OPERATIONS = {
    "ListShares": ("s", "l"),
    "CreateShare": ("c", "cw"), "GetShareProperties": ("c", "r"), "DeleteShare": ("c", "d"),
    "ListDirectoriesAndFiles": ("c", "l"),
    "CreateDirectory": ("o", "cw"), "GetDirectoryProperties": ("o", "r"), "DeleteDirectory": ("o", "d"),
    "RenameDirectory": ("o", "w"), "SetDirectoryMetadata": ("o", "w"),
    "CreateFile": ("o", "cw"), "PutRange": ("o", "w"), "GetFile": ("o", "r"), "GetFileProperties": ("o", "r"),
    "SetFileProperties": ("o", "w"), "SetFileMetadata": ("o", "w"), "DeleteFile": ("o", "d"),
    "LeaseFile": ("o", "w"), "RenameFile": ("o", "w"),
}
FILE_SAS_OPERATIONS = {"CreateFile", "PutRange", "GetFile", "GetFileProperties", "SetFileProperties",
                       "SetFileMetadata", "DeleteFile", "LeaseFile", "RenameFile"}


class Authorizer:
    def __init__(self, account, key):
        self.account = account
        self.key = key

    def check(self, method, raw_path, query_pairs, headers, operation, share, path):
        authorization = headers.get("authorization")
        query = dict(query_pairs)
        if authorization:
            self.check_shared_key(method, raw_path, query_pairs, headers, authorization)
        elif "sig" in query:
            self.check_sas(query, operation, share, path)
        else:
            raise ServiceError(401, "NoAuthenticationInformation",
                               "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.")

    @staticmethod
    def failed(detail):
        return ServiceError(403, "AuthenticationFailed",
                            "Server failed to authenticate the request. Make sure the value of Authorization header "
                            "is formed correctly including the signature.", detail=detail)

    def check_shared_key(self, method, raw_path, query_pairs, headers, authorization):
        scheme, _, credential = authorization.partition(" ")
        account, _, signature = credential.partition(":")
        if scheme != "SharedKey":
            raise self.failed(f"Authentication scheme {scheme} is not supported.")
        if account != self.account:
            raise self.failed(f"The account {account} in the Authorization header does not own this endpoint.")
        stamp = headers.get("x-ms-date") or headers.get("date")
        if not stamp:
            raise self.failed("Request date header not specified.")
        try:
            moment = email.utils.parsedate_to_datetime(stamp)
        except (TypeError, ValueError):
            raise self.failed(f"The date header '{stamp}' is not in RFC 1123 format.")
        if moment.tzinfo is None or abs(now() - moment) > CLOCK_SKEW:
            raise self.failed(f"Request date header too old: '{stamp}'.")
        string_to_sign = shared_key_string_to_sign(method, raw_path, query_pairs, headers, self.account)
        expected = sign(self.key, string_to_sign)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise self.failed(f"The MAC signature found in the HTTP request '{signature}' is not the same as any "
                              f"computed signature. Server used following string to sign: '{string_to_sign}'.")

    def check_sas(self, query, operation, share, path):
        value = lambda name: query.get(name, "")
        version = value("sv")
        if not version:
            raise self.failed("Signed version (sv) is required.")
        if "ss" in query:
            string_to_sign = "\n".join([self.account, value("sp"), value("ss"), value("srt"), value("st"),
                                        value("se"), value("sip"), value("spr"), version]) + "\n"
            if version >= ENCRYPTION_SCOPE_VERSION:
                string_to_sign += value("ses") + "\n"
        elif "sr" in query:
            resource = "/file/" + self.account + "/" + share
            if value("sr") == "f":
                resource += "/" + "/".join(path)
            elif value("sr") != "s":
                raise self.failed(f"Signed resource '{value('sr')}' is not supported.")
            string_to_sign = "\n".join([value("sp"), value("st"), value("se"), resource, value("si"), value("sip"),
                                        value("spr"), version, value("rscc"), value("rscd"), value("rsce"),
                                        value("rscl"), value("rsct")])
        else:
            raise self.failed("A SAS needs either signed services (ss) or a signed resource (sr).")
        if not hmac.compare_digest(sign(self.key, string_to_sign).encode(), value("sig").encode()):
            raise self.failed(f"Signature did not match. String to sign used was {string_to_sign}")
        if value("spr") == "https":
            raise ServiceError(403, "AuthorizationProtocolMismatch",
                               "This request is not authorized to perform this operation using this protocol.")
        if not value("se"):
            raise self.failed("Signed expiry time (se) is required.")
        if now() > parse_sas_time(value("se")) or (value("st") and now() < parse_sas_time(value("st"))):
            raise self.failed("Signature not valid in the specified time frame.")

        resource_type, allowed = OPERATIONS[operation]
        if "ss" in query:
            if "f" not in value("ss"):
                raise ServiceError(403, "AuthorizationServiceMismatch",
                                   "This request is not authorized to perform this operation using this service.")
            if resource_type not in value("srt"):
                raise ServiceError(403, "AuthorizationResourceTypeMismatch",
                                   "This request is not authorized to perform this operation using this resource type.")
        else:
            if operation in ("ListShares", "CreateShare", "DeleteShare"):
                raise ServiceError(403, "AuthorizationResourceTypeMismatch",
                                   "This request is not authorized to perform this operation using this resource type.")
            if value("sr") == "f" and operation not in FILE_SAS_OPERATIONS:
                raise ServiceError(403, "AuthorizationResourceTypeMismatch",
                                   "This request is not authorized to perform this operation using this resource type.")
        if not any(letter in value("sp") for letter in allowed):
            raise ServiceError(403, "AuthorizationPermissionMismatch",
                               "This request is not authorized to perform this operation using this permission.")


# ---------------------------------------------------------------------------------------------------
# Operations.

class Response:
    def __init__(self, status, headers=None, body=b""):
        self.status = status
        self.headers = headers or {}
        self.body = body


class FileService:
    def __init__(self, account, key):
        self.account = account
        self.namespace = Namespace()
        self.authorizer = Authorizer(account, key)
        self.faults_lock = threading.Lock()
        self.faults = []  # [(status, code, operation or None, after)] each consumed by one request

    # -- routing -----------------------------------------------------------------------------------

    def handle(self, method, raw_path, raw_query, headers, body, endpoint):
        query_pairs = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
        query = dict(query_pairs)
        # Decode before splitting: the SDK sends directory paths with '/' as %2F and the service accepts it.
        segments = urllib.parse.unquote(raw_path, errors="surrogatepass").split("/")[1:]
        if segments and segments[0] == self.account:
            segments = segments[1:]  # emulator-style URL: /<account>/<share>/...
            endpoint += "/" + self.account
        if segments and segments[-1] == "":
            segments = segments[:-1]
        share = segments[0] if segments else ""
        if headers.get("x-ms-allow-trailing-dot", "").lower() != "true":
            segments = segments[:1] + [part.rstrip(".") for part in segments[1:]]
        path = segments[1:]
        restype, comp = query.get("restype", ""), query.get("comp", "")

        operation = self.operation(method, share, path, restype, comp)
        if operation is None:
            raise ServiceError(400, "UnsupportedHttpVerb" if method not in ("GET", "HEAD", "PUT", "DELETE") else "InvalidQueryParameterValue",
                               f"The {method} request with restype '{restype}' and comp '{comp}' is not supported.")
        self.authorizer.check(method, raw_path, query_pairs, headers, operation, share, path)
        version = headers.get("x-ms-version") or query.get("sv")
        if not version or len(version) != 10 or version[4] != "-" or version[7] != "-":
            raise ServiceError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format.",
                               detail="x-ms-version")
        fault = self.take_fault(operation)
        if fault and not fault[3]:
            raise self.injected(fault)
        if operation not in ("ListShares", "CreateShare") and share:
            validate_share_name(share)
        for component in path:
            validate_component(component)
        handler = getattr(self, "op_" + operation)
        response = handler(headers=headers, query=query, share=share, path=path, body=body, endpoint=endpoint)
        if fault:
            raise self.injected(fault)
        response.headers.setdefault("x-ms-version", version)
        return response

    def take_fault(self, operation):
        with self.faults_lock:
            for index, fault in enumerate(self.faults):
                if fault[2] in (None, operation):
                    return self.faults.pop(index)
        return None

    @staticmethod
    def injected(fault):
        return ServiceError(fault[0], fault[1], "The server is busy." if fault[1] == "ServerBusy" else "Injected fault.")

    @staticmethod
    def operation(method, share, path, restype, comp):
        if not share:
            return "ListShares" if (method, comp) == ("GET", "list") else None
        if not path and restype == "share":
            return {("PUT", ""): "CreateShare", ("GET", ""): "GetShareProperties", ("HEAD", ""): "GetShareProperties",
                    ("DELETE", ""): "DeleteShare"}.get((method, comp))
        if restype == "directory":
            return {("PUT", ""): "CreateDirectory", ("GET", ""): "GetDirectoryProperties",
                    ("HEAD", ""): "GetDirectoryProperties", ("DELETE", ""): "DeleteDirectory",
                    ("GET", "list"): "ListDirectoriesAndFiles", ("PUT", "rename"): "RenameDirectory",
                    ("PUT", "metadata"): "SetDirectoryMetadata"}.get((method, comp))
        if not path or restype:
            return None
        return {("PUT", ""): "CreateFile", ("PUT", "range"): "PutRange", ("GET", ""): "GetFile",
                ("HEAD", ""): "GetFileProperties", ("PUT", "properties"): "SetFileProperties",
                ("PUT", "metadata"): "SetFileMetadata", ("DELETE", ""): "DeleteFile",
                ("PUT", "lease"): "LeaseFile", ("PUT", "rename"): "RenameFile"}.get((method, comp))

    # -- lookups (call with the lock held) ---------------------------------------------------------

    def share_named(self, name):
        share = self.namespace.shares.get(name)
        if share is None:
            raise ServiceError(404, "ShareNotFound", "The specified share does not exist.")
        return share

    def parent_of(self, share, path):
        """The directory node that holds path[-1]; ParentNotFound when any ancestor is missing."""
        node = self.share_named(share).root
        for name in path[:-1]:
            node = node.lookup(name)
            if node is None or not node.is_directory:
                raise ServiceError(404, "ParentNotFound", "The specified parent path does not exist.")
        return node

    def directory_at(self, share, path):
        node = self.share_named(share).root if not path else self.parent_of(share, path).lookup(path[-1])
        if node is None:
            raise ServiceError(404, "ResourceNotFound", "The specified resource does not exist.")
        if not node.is_directory:
            raise ServiceError(409, "ResourceTypeMismatch", "The specified resource type does not match the type of the resource.")
        return node

    def file_at(self, share, path):
        node = self.parent_of(share, path).lookup(path[-1])
        if node is None:
            raise ServiceError(404, "ResourceNotFound", "The specified resource does not exist.")
        if node.is_directory:
            raise ServiceError(409, "ResourceTypeMismatch", "The specified resource type does not match the type of the resource.")
        return node

    @staticmethod
    def check_lease(node, lease_id, writing):
        """Writes to a leased file need its lease id; any operation naming a lease id must name the right one."""
        if node.lease_id is None:
            if lease_id:
                raise ServiceError(412, "LeaseNotPresentWithFileOperation",
                                   "There is currently no lease on the file.")
            return
        if not lease_id:
            if writing:
                raise ServiceError(412, "LeaseIdMissing",
                                   "There is currently a lease on the file and no lease ID was specified in the request.")
        elif lease_id != node.lease_id:
            raise ServiceError(412, "LeaseIdMismatchWithFileOperation",
                               "The lease ID specified did not match the lease ID for the file.")

    @staticmethod
    def node_headers(node):
        headers = {"ETag": node.etag, "Last-Modified": http_date(node.modified), "x-ms-file-id": node.file_id,
                   "x-ms-file-parent-id": "0", "x-ms-file-attributes": "Directory" if node.is_directory else "Archive",
                   "x-ms-file-creation-time": iso_time(node.created), "x-ms-file-last-write-time": iso_time(node.modified),
                   "x-ms-file-change-time": iso_time(node.modified), "x-ms-file-permission-key": "4066528134148476695*1"}
        for name, value in node.metadata.items():
            headers["x-ms-meta-" + name] = value
        if not node.is_directory:
            headers["x-ms-type"] = "File"
            headers["x-ms-lease-state"] = "leased" if node.lease_id else "available"
            headers["x-ms-lease-status"] = "locked" if node.lease_id else "unlocked"
            if node.lease_id:
                headers["x-ms-lease-duration"] = "infinite"
        return headers

    @staticmethod
    def metadata_from(headers):
        return {name[len("x-ms-meta-"):]: value for name, value in headers.items() if name.startswith("x-ms-meta-")}

    # -- shares ------------------------------------------------------------------------------------

    def op_ListShares(self, headers, query, share, path, body, endpoint):
        prefix = query.get("prefix", "")
        with self.namespace.lock:
            names = sorted(name for name in self.namespace.shares if name.startswith(prefix))
        start = query.get("marker", "")
        names = [name for name in names if name >= start]
        limit = min(int(query.get("maxresults", MAX_LIST_RESULTS)), MAX_LIST_RESULTS)
        page, rest = names[:limit], names[limit:]
        items = "".join(f"<Share><Name>{xml_escape(name)}</Name><Properties><Last-Modified>{http_date(now())}"
                        f"</Last-Modified><Etag>\"0x1\"</Etag><Quota>5120</Quota></Properties></Share>" for name in page)
        xml = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint={quoteattr(endpoint + "/")}>'
               f"<Prefix>{xml_escape(prefix)}</Prefix><Marker>{xml_escape(start)}</Marker><MaxResults>{limit}</MaxResults>"
               f"<Shares>{items}</Shares><NextMarker>{xml_escape(rest[0]) if rest else ''}</NextMarker></EnumerationResults>")
        return Response(200, {"Content-Type": "application/xml"}, xml.encode())

    def op_CreateShare(self, headers, query, share, path, body, endpoint):
        validate_share_name(share)
        with self.namespace.lock:
            if share in self.namespace.shares:
                raise ServiceError(409, "ShareAlreadyExists", "The specified share already exists.")
            created = Share(share)
            created.metadata = self.metadata_from(headers)
            self.namespace.shares[share] = created
        return Response(201, {"ETag": created.root.etag, "Last-Modified": http_date(created.root.modified)})

    def op_GetShareProperties(self, headers, query, share, path, body, endpoint):
        with self.namespace.lock:
            found = self.share_named(share)
            result = {"ETag": found.root.etag, "Last-Modified": http_date(found.root.modified), "x-ms-share-quota": "5120"}
            result.update({"x-ms-meta-" + name: value for name, value in found.metadata.items()})
        return Response(200, result)

    def op_DeleteShare(self, headers, query, share, path, body, endpoint):
        with self.namespace.lock:
            self.share_named(share)
            del self.namespace.shares[share]
        return Response(202)

    # -- directories -------------------------------------------------------------------------------

    def op_CreateDirectory(self, headers, query, share, path, body, endpoint):
        with self.namespace.lock:
            parent = self.parent_of(share, path)
            if parent.lookup(path[-1]) is not None:
                raise ServiceError(409, "ResourceAlreadyExists", "The specified resource already exists.")
            node = Node(path[-1], True)
            node.metadata = self.metadata_from(headers)
            parent.children[fold(path[-1])] = node
            parent.touch()
            return Response(201, self.node_headers(node))

    def op_GetDirectoryProperties(self, headers, query, share, path, body, endpoint):
        with self.namespace.lock:
            return Response(200, self.node_headers(self.directory_at(share, path)))

    def op_SetDirectoryMetadata(self, headers, query, share, path, body, endpoint):
        with self.namespace.lock:
            node = self.directory_at(share, path)
            node.metadata = self.metadata_from(headers)
            node.touch()
            return Response(200, {"ETag": node.etag})

    def op_DeleteDirectory(self, headers, query, share, path, body, endpoint):
        if not path:
            raise ServiceError(400, "InvalidUri", "The root directory cannot be deleted.")
        with self.namespace.lock:
            node = self.directory_at(share, path)
            if node.children:
                raise ServiceError(409, "DirectoryNotEmpty", "The specified directory is not empty.")
            parent = self.parent_of(share, path)
            del parent.children[fold(path[-1])]
            parent.touch()
        return Response(202)

    def op_ListDirectoriesAndFiles(self, headers, query, share, path, body, endpoint):
        prefix = query.get("prefix", "")
        marker = query.get("marker", "")
        try:
            limit = int(query.get("maxresults", MAX_LIST_RESULTS))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIST_RESULTS:
            raise ServiceError(400, "OutOfRangeQueryParameterValue",
                               "One of the query parameters specified in the request URI is outside the permissible range.")
        start = ""
        if marker:
            try:
                start = base64.urlsafe_b64decode(marker.encode()).decode("utf-8", "surrogatepass")
            except ValueError:
                raise ServiceError(400, "InvalidQueryParameterValue", "The marker is not valid.")
        with self.namespace.lock:
            directory = self.directory_at(share, path)
            entries = sorted((fold(node.name), node) for node in directory.children.values()
                             if fold(node.name).startswith(fold(prefix)))
            entries = [node for key, node in entries if key >= fold(start)]
            page, rest = entries[:limit], entries[limit:]
            items = []
            for node in page:
                tag = "Directory" if node.is_directory else "File"
                properties = "" if node.is_directory else f"<Content-Length>{len(node.data)}</Content-Length>"
                properties += (f"<CreationTime>{iso_time(node.created)}</CreationTime>"
                               f"<LastWriteTime>{iso_time(node.modified)}</LastWriteTime>"
                               f"<ChangeTime>{iso_time(node.modified)}</ChangeTime>"
                               f"<Last-Modified>{http_date(node.modified)}</Last-Modified><Etag>{xml_escape(node.etag)}</Etag>")
                items.append(f"<{tag}>{encoded_name_element('Name', node.name)}<FileId>{node.file_id}</FileId>"
                             f"<Properties>{properties}</Properties></{tag}>")
            directory_id = directory.file_id
        next_marker = base64.urlsafe_b64encode(rest[0].name.encode("utf-8", "surrogatepass")).decode() if rest else ""
        xml = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint={quoteattr(endpoint + "/")} '
               f'ShareName={quoteattr(share)} DirectoryPath={quoteattr("/".join(path))}>'
               f"{encoded_name_element('Prefix', prefix)}<Marker>{xml_escape(marker)}</Marker>"
               f"<MaxResults>{limit}</MaxResults><DirectoryId>{directory_id}</DirectoryId>"
               f"<Entries>{''.join(items)}</Entries><NextMarker>{next_marker}</NextMarker></EnumerationResults>")
        return Response(200, {"Content-Type": "application/xml"}, xml.encode("utf-8", "surrogatepass"))

    # -- files -------------------------------------------------------------------------------------

    def op_CreateFile(self, headers, query, share, path, body, endpoint):
        if headers.get("x-ms-type", "").lower() != "file":
            raise ServiceError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified.",
                               detail="x-ms-type")
        try:
            size = int(headers["x-ms-content-length"])
        except (KeyError, ValueError):
            raise ServiceError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified.",
                               detail="x-ms-content-length")
        if not 0 <= size <= MAX_FILE_BYTES:
            raise ServiceError(400, "OutOfRangeInput", "One of the request inputs is out of range.")
        with self.namespace.lock:
            parent = self.parent_of(share, path)
            node = parent.lookup(path[-1])
            if node is not None and node.is_directory:
                raise ServiceError(409, "ResourceAlreadyExists", "The specified resource already exists.")
            if node is None:
                node = Node(path[-1], False)
                parent.children[fold(path[-1])] = node
                parent.touch()
            else:
                self.check_lease(node, headers.get("x-ms-lease-id"), writing=True)
            node.data = bytearray(size)
            node.metadata = self.metadata_from(headers)
            node.content_type = headers.get("x-ms-content-type", "application/octet-stream")
            node.touch()
            return Response(201, self.node_headers(node))

    def op_PutRange(self, headers, query, share, path, body, endpoint):
        spec = headers.get("x-ms-range") or headers.get("range")
        if not spec:
            raise ServiceError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified.",
                               detail="x-ms-range")
        write = headers.get("x-ms-write", "").lower()
        if write not in ("update", "clear"):
            raise ServiceError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format.",
                               detail="x-ms-write")
        with self.namespace.lock:
            node = self.file_at(share, path)
            self.check_lease(node, headers.get("x-ms-lease-id"), writing=True)
            start, end = parse_range(spec, len(node.data))
            if end is None:
                raise ServiceError(400, "InvalidHeaderValue", "Put Range needs a range with an end.", detail="x-ms-range")
            length = end - start + 1
            if write == "update" and length > MAX_RANGE_BYTES:
                raise ServiceError(413, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum permissible limit.")
            if end >= len(node.data):
                raise ServiceError(416, "InvalidRange", "The range specified is invalid for the current size of the resource.",
                                   {"Content-Range": f"bytes */{len(node.data)}"})
            if write == "update":
                if len(body) != length:
                    raise ServiceError(400, "InvalidHeaderValue", "The range length does not match the Content-Length.",
                                       detail="Content-Length")
                if "content-md5" in headers and base64.b64encode(hashlib.md5(body).digest()).decode() != headers["content-md5"]:
                    raise ServiceError(400, "Md5Mismatch", "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
                node.data[start:end + 1] = body
            else:
                if body:
                    raise ServiceError(400, "InvalidHeaderValue", "Clearing a range takes no body.", detail="Content-Length")
                node.data[start:end + 1] = bytes(length)
            node.touch()
            result = {"ETag": node.etag, "Last-Modified": http_date(node.modified), "x-ms-request-server-encrypted": "true"}
            if write == "update":
                result["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
            return Response(201, result)

    def op_GetFile(self, headers, query, share, path, body, endpoint):
        spec = headers.get("x-ms-range") or headers.get("range")
        with self.namespace.lock:
            node = self.file_at(share, path)
            self.check_lease(node, headers.get("x-ms-lease-id"), writing=False)
            size = len(node.data)
            result = self.node_headers(node)
            result["Content-Type"] = node.content_type
            result["Accept-Ranges"] = "bytes"
            if spec is None:
                return Response(200, result, bytes(node.data))
            start, end = parse_range(spec, size)
            if start >= size:
                raise ServiceError(416, "InvalidRange", "The range specified is invalid for the current size of the resource.",
                                   {"Content-Range": f"bytes */{size}"})
            end = size - 1 if end is None else min(end, size - 1)
            data = bytes(node.data[start:end + 1])
        result["Content-Range"] = f"bytes {start}-{end}/{size}"
        if headers.get("x-ms-range-get-content-md5", "").lower() == "true":
            if len(data) > MAX_RANGE_BYTES:
                raise ServiceError(400, "OutOfRangeInput", "The range for a content MD5 must be at most 4 MiB.")
            result["Content-MD5"] = base64.b64encode(hashlib.md5(data).digest()).decode()
        return Response(206, result, data)

    def op_GetFileProperties(self, headers, query, share, path, body, endpoint):
        with self.namespace.lock:
            node = self.file_at(share, path)
            self.check_lease(node, headers.get("x-ms-lease-id"), writing=False)
            result = self.node_headers(node)
            result["Content-Length"] = str(len(node.data))
            result["Content-Type"] = node.content_type
            return Response(200, result)

    def op_SetFileProperties(self, headers, query, share, path, body, endpoint):
        with self.namespace.lock:
            node = self.file_at(share, path)
            self.check_lease(node, headers.get("x-ms-lease-id"), writing=True)
            if "x-ms-content-length" in headers:
                size = int(headers["x-ms-content-length"])
                if size < len(node.data):
                    del node.data[size:]
                else:
                    node.data.extend(bytes(size - len(node.data)))
            if "x-ms-content-type" in headers:
                node.content_type = headers["x-ms-content-type"]
            node.touch()
            return Response(200, self.node_headers(node))

    def op_SetFileMetadata(self, headers, query, share, path, body, endpoint):
        with self.namespace.lock:
            node = self.file_at(share, path)
            self.check_lease(node, headers.get("x-ms-lease-id"), writing=True)
            node.metadata = self.metadata_from(headers)
            node.touch()
            return Response(200, {"ETag": node.etag, "Last-Modified": http_date(node.modified)})

    def op_DeleteFile(self, headers, query, share, path, body, endpoint):
        with self.namespace.lock:
            node = self.file_at(share, path)
            self.check_lease(node, headers.get("x-ms-lease-id"), writing=True)
            parent = self.parent_of(share, path)
            del parent.children[fold(path[-1])]
            parent.touch()
        return Response(202)

    def op_LeaseFile(self, headers, query, share, path, body, endpoint):
        action = headers.get("x-ms-lease-action", "").lower()
        lease_id = headers.get("x-ms-lease-id")
        proposed = headers.get("x-ms-proposed-lease-id")
        for value in (lease_id, proposed):
            if value is not None:
                try:
                    uuid.UUID(value)
                except ValueError:
                    raise ServiceError(400, "InvalidHeaderValue", "A lease id must be a GUID.", detail="x-ms-lease-id")
        with self.namespace.lock:
            node = self.file_at(share, path)
            if action == "acquire":
                if headers.get("x-ms-lease-duration", "-1") != "-1":
                    raise ServiceError(400, "InvalidHeaderValue", "File leases are infinite: x-ms-lease-duration must be -1.",
                                       detail="x-ms-lease-duration")
                wanted = proposed or str(uuid.uuid4())
                if node.lease_id is not None and node.lease_id != wanted:
                    raise ServiceError(409, "LeaseAlreadyPresent", "There is already a lease present.")
                node.lease_id = wanted
                return Response(201, {"x-ms-lease-id": wanted, "ETag": node.etag, "Last-Modified": http_date(node.modified)})
            if action == "break":
                node.lease_id = None
                return Response(202, {"x-ms-lease-time": "0", "ETag": node.etag, "Last-Modified": http_date(node.modified)})
            if action not in ("release", "change"):
                raise ServiceError(400, "InvalidHeaderValue", "The lease action is not valid.", detail="x-ms-lease-action")
            if not lease_id:
                raise ServiceError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified.",
                                   detail="x-ms-lease-id")
            if node.lease_id is None:
                raise ServiceError(409, "LeaseNotPresentWithLeaseOperation", "There is currently no lease on the file.")
            if action == "release":
                if lease_id != node.lease_id:
                    raise ServiceError(409, "LeaseIdMismatchWithLeaseOperation",
                                       "The lease ID specified did not match the lease ID for the file.")
                node.lease_id = None
                return Response(200, {"ETag": node.etag, "Last-Modified": http_date(node.modified)})
            if not proposed:
                raise ServiceError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified.",
                                   detail="x-ms-proposed-lease-id")
            if lease_id != node.lease_id and proposed != node.lease_id:
                raise ServiceError(409, "LeaseIdMismatchWithLeaseOperation",
                                   "The lease ID specified did not match the lease ID for the file.")
            node.lease_id = proposed
            return Response(200, {"x-ms-lease-id": proposed, "ETag": node.etag, "Last-Modified": http_date(node.modified)})

    def rename_source_path(self, headers, share):
        source = headers.get("x-ms-file-rename-source")
        if not source:
            raise ServiceError(400, "MissingRequiredHeader", "An HTTP header that's mandatory for this request is not specified.",
                               detail="x-ms-file-rename-source")
        raw = urllib.parse.urlsplit(source).path
        parts = urllib.parse.unquote(raw, errors="surrogatepass").split("/")[1:]
        if parts and parts[0] == self.account:
            parts = parts[1:]  # the same two URL styles as the request itself
        if not parts or parts[0] != share or len(parts) < 2:
            raise ServiceError(400, "InvalidHeaderValue", "The rename source must be in the same share.",
                               detail="x-ms-file-rename-source")
        path = parts[1:]
        if headers.get("x-ms-source-allow-trailing-dot", "").lower() != "true":
            path = [part.rstrip(".") for part in path]
        for component in path:
            validate_component(component)
        return path

    def rename(self, headers, share, path, want_directory):
        source_path = self.rename_source_path(headers, share)
        replace = headers.get("x-ms-file-rename-replace-if-exists", "false").lower() == "true"
        with self.namespace.lock:
            source_parent = self.parent_of(share, source_path)
            node = source_parent.lookup(source_path[-1])
            if node is None:
                raise ServiceError(404, "ResourceNotFound", "The specified resource does not exist.")
            if node.is_directory != want_directory:
                raise ServiceError(409, "ResourceTypeMismatch", "The specified resource type does not match the type of the resource.")
            if not want_directory and node.lease_id is not None and headers.get("x-ms-source-lease-id") != node.lease_id:
                raise ServiceError(412, "LeaseIdMissing" if not headers.get("x-ms-source-lease-id") else "LeaseIdMismatchWithFileOperation",
                                   "The source file is leased and the request did not name its lease.")
            if want_directory:
                ancestor = self.share_named(share).root
                for name in path:  # a directory cannot move below itself
                    ancestor = ancestor.lookup(name) if ancestor and ancestor.is_directory else None
                    if ancestor is node:
                        raise ServiceError(400, "InvalidResourceName", "A directory cannot be moved into itself.")
            target_parent = self.parent_of(share, path)
            existing = target_parent.lookup(path[-1])
            if existing is not None and existing is not node:
                if not replace:
                    raise ServiceError(409, "ResourceAlreadyExists", "The specified resource already exists.")
                if existing.is_directory:
                    raise ServiceError(409, "ResourceTypeMismatch", "The destination is a directory.")
                if existing.lease_id is not None and headers.get("x-ms-destination-lease-id") != existing.lease_id:
                    raise ServiceError(412, "LeaseIdMissing" if not headers.get("x-ms-destination-lease-id") else "LeaseIdMismatchWithFileOperation",
                                       "The destination file is leased and the request did not name its lease.")
            del source_parent.children[fold(source_path[-1])]
            node.name = path[-1]
            target_parent.children[fold(path[-1])] = node
            source_parent.touch()
            target_parent.touch()
            node.touch()
            return Response(200, self.node_headers(node))

    def op_RenameFile(self, headers, query, share, path, body, endpoint):
        return self.rename(headers, share, path, want_directory=False)

    def op_RenameDirectory(self, headers, query, share, path, body, endpoint):
        if not path:
            raise ServiceError(400, "InvalidUri", "The root directory cannot be renamed.")
        return self.rename(headers, share, path, want_directory=True)


# ---------------------------------------------------------------------------------------------------
# HTTP.

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and Expect: 100-continue, as clients expect of the service
    server_version = "Windows-Azure-File/1.0"
    sys_version = ""

    def log_message(self, format, *args):
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("HEAD")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_POST(self):
        self.dispatch("POST")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def request_headers(self):
        """Lowercased names; repeated headers joined with commas, values as sent."""
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = headers[name] + "," + value if name in headers else value
        return headers

    def dispatch(self, method):
        service = self.server.service
        request_id = str(uuid.uuid4())
        body = self.read_body()
        raw_path, _, raw_query = self.path.partition("?")
        if raw_path == "/_emulator/fail":
            query = dict(urllib.parse.parse_qsl(raw_query))
            with service.faults_lock:
                fault = (int(query.get("status", 503)), query.get("code", "ServerBusy"), query.get("operation"),
                         query.get("after") == "1")
                service.faults += [fault] * int(query.get("count", 1))
            return self.send(Response(200), method, request_id)
        headers = self.request_headers()
        host = headers.get("host", f"{self.server.server_address[0]}:{self.server.server_address[1]}")
        try:
            response = service.handle(method, raw_path, raw_query, headers, body, "http://" + host)
        except ServiceError as error:
            response = self.error_response(error, request_id)
        except Exception as error:  # a bug in the emulator must still answer, as the service would with 500
            print(f"emulator: internal error on {method} {self.path}: {error!r}", file=sys.stderr)
            response = self.error_response(ServiceError(500, "InternalError", "The server encountered an internal error."), request_id)
        if "x-ms-client-request-id" in headers:
            response.headers["x-ms-client-request-id"] = headers["x-ms-client-request-id"]
        self.send(response, method, request_id)

    @staticmethod
    def error_response(error, request_id):
        message = f"{error.message}\nRequestId:{request_id}\nTime:{iso_time(now())}"
        detail = ""
        if error.code == "AuthenticationFailed" and error.detail:
            detail = f"<AuthenticationErrorDetail>{xml_escape(error.detail)}</AuthenticationErrorDetail>"
        elif error.detail:
            detail = f"<HeaderName>{xml_escape(error.detail)}</HeaderName>"
        xml = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{error.code}</Code>'
               f"<Message>{xml_escape(message)}</Message>{detail}</Error>")
        headers = {"x-ms-error-code": error.code, "Content-Type": "application/xml"}
        headers.update(error.headers)
        return Response(error.status, headers, xml.encode())

    def send(self, response, method, request_id):
        self.send_response(response.status)
        headers = dict(response.headers)
        headers.setdefault("x-ms-request-id", request_id)
        headers.setdefault("x-ms-version", SUPPORTED_VERSION)
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        length = headers.get("Content-Length", str(len(response.body))) if method == "HEAD" else str(len(response.body))
        self.send_header("Content-Length", length)
        self.end_headers()
        if method != "HEAD" and response.body:
            self.wfile.write(response.body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main(argv=None):
    parser = argparse.ArgumentParser(description="Azure Files (FileREST) emulator for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--account", required=True)
    parser.add_argument("--key", required=True, help="the account key, base64")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--exit-with-stdin", action="store_true",
                        help="exit when stdin closes, so a test process that dies takes the emulator with it")
    args = parser.parse_args(argv)
    try:
        key = base64.b64decode(args.key, validate=True)
    except ValueError:
        parser.error("--key must be base64")
    # A parent may have spawned us with signals blocked (threads of test runners often do); unblock them so
    # SIGTERM and SIGINT stop the emulator.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    if args.exit_with_stdin:
        def exit_at_eof():
            while sys.stdin.buffer.read(4096):
                pass
            os._exit(0)
        threading.Thread(target=exit_at_eof, daemon=True).start()
    server = Server((args.host, args.port), Handler)
    server.service = FileService(args.account, key)
    server.verbose = args.verbose
    print(f"FileREST emulator listening on http://{args.host}:{server.server_address[1]}/{args.account}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
