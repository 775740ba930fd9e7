#!/usr/bin/env python3
"""An S3 server for Tiergate's tests: moto on loopback with IAM signature checking turned on.

Prints one JSON line with the endpoint, a bucket, an IAM user's keys and an assumed role's temporary
(session-token) keys, then serves until its stdin closes (the test process exited) or it is killed.

Authentication: moto checks SigV4 signatures and IAM policies only once INITIAL_NO_AUTH_ACTION_COUNT
requests have been served. The count starts unlimited so the setup below (user, keys, policy, role,
bucket) can run without credentials; then it is set to 0, and from there every request must be signed
with the created keys: a wrong secret is refused with 403 SignatureDoesNotMatch.

Three things moto's stock server does differently from S3, and what this helper does about them:

- Signature checking rebuilds the URL through werkzeug, which decodes parts of it (`+`, UTF-8,
  `%2F` in queries), so even botocore's own requests for such keys fail. S3 checks the signature over
  the request target as sent; the patch below hands moto's checker that raw target.
- `If-None-Match: *` is check-then-write without a lock, so two racing writers can both win, which
  S3 never allows. Conditional writes (and multipart completion) are serialized here.
- werkzeug closes every connection after one response. This helper serves moto's WSGI app over
  HTTP/1.1 keep-alive instead, so clients can reuse connections as they do with S3.

Requests are counted by method, share prefix and kind of object (the first key component after the
prefix: packs, index, log, …): `GET /__requests?prefix=BUCKET/PREFIX` answers them as JSON
(`{"GET packs": 3, …}`), so a test can count the requests one share received while others run.
"""
import ctypes
import io
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote_to_bytes, urlsplit, urlunsplit

os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")

from botocore.config import Config  # noqa: E402
import botocore.session  # noqa: E402
from moto import settings  # noqa: E402
from moto.core.authorization import ActionAuthenticatorMixin  # noqa: E402
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app  # noqa: E402

REGION = "us-east-1"
BUCKET = "tiergate-test"
current_target = threading.local()
request_counts = {}
request_counts_lock = threading.Lock()


def count_request(method, path):
    """Counts a request to /BUCKET/PREFIX/KIND/… under "BUCKET/PREFIX" as "METHOD KIND"."""
    parts = unquote_to_bytes(path).decode("utf-8", "replace").lstrip("/").split("/")
    if len(parts) < 3:
        return
    with request_counts_lock:
        counts = request_counts.setdefault(parts[0] + "/" + parts[1], {})
        counts[method + " " + parts[2]] = counts.get(method + " " + parts[2], 0) + 1


def die_with_parent():
    """Ask the kernel to end this process when the test process dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def check_signature_over_raw_target():
    original = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def authenticate(self, iam_request_cls, resource="*"):
        raw = getattr(current_target, "value", None)
        if raw is None:
            return original(self, iam_request_cls, resource)
        saved = self.uri
        parts = urlsplit(saved)
        path, _, query = raw.partition("?")
        self.uri = urlunsplit((parts.scheme, parts.netloc, path, query, ""))
        try:
            return original(self, iam_request_cls, resource)
        finally:
            self.uri = saved

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authenticate


class SerializedConditionalWrites:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        conditional = environ.get("HTTP_IF_NONE_MATCH") or environ.get("HTTP_IF_MATCH") or (
            environ.get("REQUEST_METHOD") == "POST" and "uploadId=" in environ.get("QUERY_STRING", ""))
        if not conditional:
            return self.app(environ, start_response)
        with self.lock:
            # Produce the whole response inside the lock: the write happens while it is produced.
            return list(self.app(environ, start_response))


class KeepAliveWSGIHandler(BaseHTTPRequestHandler):
    """A minimal HTTP/1.1 WSGI server: bodies by Content-Length, responses buffered, connections kept."""
    protocol_version = "HTTP/1.1"
    app = None

    def log_message(self, *args):
        pass

    def do_GET(self): self.run_wsgi()
    def do_HEAD(self): self.run_wsgi()
    def do_PUT(self): self.run_wsgi()
    def do_POST(self): self.run_wsgi()
    def do_DELETE(self): self.run_wsgi()

    def run_wsgi(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        if path == "/__requests":
            prefix = unquote_to_bytes(query.partition("prefix=")[2]).decode()
            with request_counts_lock:
                data = json.dumps(request_counts.get(prefix, {})).encode()
            self.send_response_only(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        count_request(self.command, path)
        host, port = self.server.server_address[:2]
        environ = {
            "REQUEST_METHOD": self.command, "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"), "QUERY_STRING": query,
            "RAW_URI": self.path, "REQUEST_URI": self.path,
            "SERVER_NAME": host, "SERVER_PORT": str(port), "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": self.client_address[0], "CONTENT_LENGTH": str(length),
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        if self.headers.get("Content-Type"):
            environ["CONTENT_TYPE"] = self.headers["Content-Type"]
        for name in set(self.headers.keys()):
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = ",".join(self.headers.get_all(name))
        status_headers = []

        def start_response(status, headers, exc_info=None):
            status_headers[:] = [status, headers]
            return lambda data: None

        current_target.value = self.path
        try:
            result = self.app(environ, start_response)
            try:
                data = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        finally:
            current_target.value = None
        status, headers = status_headers
        self.send_response_only(int(status.split()[0]), status.partition(" ")[2])
        declared = None
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-length":
                declared = value
            elif lowered not in ("connection", "transfer-encoding", "keep-alive"):
                self.send_header(name, value)
        # HEAD answers carry the object's length without a body.
        self.send_header("Content-Length", declared if self.command == "HEAD" and declared else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)


def main():
    die_with_parent()
    check_signature_over_raw_target()
    KeepAliveWSGIHandler.app = SerializedConditionalWrites(DomainDispatcherApplication(create_backend_app))
    server = Server(("127.0.0.1", 0), KeepAliveWSGIHandler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{port}"

    session = botocore.session.get_session()
    config = Config(retries={"max_attempts": 1})

    def client(service, key="setup", secret="setup", token=None):
        return session.create_client(service, region_name=REGION, endpoint_url=endpoint, aws_access_key_id=key,
                                     aws_secret_access_key=secret, aws_session_token=token, config=config)

    iam = client("iam")
    iam.create_user(UserName="tiergate")
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:*", "sts:AssumeRole"], "Resource": "*"}]})
    iam.put_user_policy(UserName="tiergate", PolicyName="tiergate-s3", PolicyDocument=policy)
    key = iam.create_access_key(UserName="tiergate")["AccessKey"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
    role = iam.create_role(RoleName="tiergate-role", AssumeRolePolicyDocument=trust)["Role"]
    iam.put_role_policy(RoleName="tiergate-role", PolicyName="tiergate-s3", PolicyDocument=policy)
    client("s3").create_bucket(Bucket=BUCKET)

    # From here on, every request must carry a valid signature by a known key.
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0

    sts = client("sts", key["AccessKeyId"], key["SecretAccessKey"])
    temporary = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="tiergate-test")["Credentials"]

    print(json.dumps({
        "endpoint": endpoint, "port": port, "region": REGION, "bucket": BUCKET,
        "accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"],
        "session": {"accessKeyId": temporary["AccessKeyId"], "secretAccessKey": temporary["SecretAccessKey"],
                    "sessionToken": temporary["SessionToken"]},
    }), flush=True)
    try:
        sys.stdin.read()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
