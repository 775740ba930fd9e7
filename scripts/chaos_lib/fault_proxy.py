"""A fault-injecting HTTP proxy between the daemons and the S3 server, running in the harness process.

It lives in-process (rather than reusing Tests/support/s3_fault_proxy.py) because the harness must
turn faults on for the workload and off for the final quiet phase, and count them for the summary.
Only the exchange through the proxy is broken; the S3 server behind it always completes what it was
sent, so every fault is one a real network or a real S3 front end can produce:

  503-before      503 SlowDown; the request never reaches S3
  500-before      500 InternalError; the request never reaches S3
  500-after       the request reached S3 (a write happened) but the client sees 500
  reset-before    the connection is reset after the request was read, before forwarding
  reset-mid-body  S3 answered; headers and half the body are sent, then the connection is reset
  truncated-body  S3 answered; the full Content-Length is announced, two thirds sent, then closed
"""
import http.client
import random
import socket
import struct
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = ("503-before", "500-before", "500-after", "reset-before", "reset-mid-body", "truncated-body")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailers", "transfer-encoding", "upgrade", "expect"}


class FaultProxy:
    """Listens on a free loopback port; `rate` is the probability that a request gets one fault."""

    def __init__(self, upstream_port, seed):
        self.upstream_port = upstream_port
        self.rate = 0.0
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = Counter()
        handler = type("BoundHandler", (Handler,), {"proxy": self})
        self.server = Server(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self):
        return self.server.server_address[1]

    @property
    def faults(self):
        with self.lock:
            return sum(self.counts[kind] for kind in KINDS)

    def pick(self, method):
        with self.lock:
            self.counts["requests"] += 1
            if self.random.random() >= self.rate:
                return None
            # A HEAD answer has no body to cut short, so it only gets the faults that need none.
            kind = self.random.choice(KINDS[:4] if method == "HEAD" else KINDS)
            self.counts[kind] += 1
            return kind

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Aborted(Exception):
    """Raised after a deliberate reset or close, so the handler stops serving this connection."""


def error_document(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>chaos-proxy</RequestId></Error>").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients reuse (and sometimes lose) connections as with S3
    proxy: FaultProxy = None

    def log_message(self, *args):
        pass

    def do_GET(self): self.relay()
    def do_HEAD(self): self.relay()
    def do_PUT(self): self.relay()
    def do_POST(self): self.relay()
    def do_DELETE(self): self.relay()

    def read_body(self):
        # S3 requests carry Content-Length (the store signs or hashes whole bodies; no chunked encoding).
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def forward(self, body):
        connection = http.client.HTTPConnection("127.0.0.1", self.proxy.upstream_port, timeout=120)
        try:
            # Host is passed through unchanged: it is part of the SigV4 signature.
            connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    connection.putheader(name, value)
            if body or self.command in ("PUT", "POST"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            data = response.read()
            headers = [(n, v) for n, v in response.getheaders() if n.lower() not in HOP_BY_HOP]
            return response.status, response.reason, headers, data
        finally:
            connection.close()

    def reply_error(self, status, code, message):
        document = error_document(code, message)
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(document)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(document)

    def reset(self):
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise Aborted()

    def relay(self):
        body = self.read_body()
        kind = self.proxy.pick(self.command)
        if kind == "reset-before":
            self.reset()
        if kind == "503-before":
            return self.reply_error(503, "SlowDown", "Please reduce your request rate.")
        if kind == "500-before":
            return self.reply_error(500, "InternalError", "We encountered an internal error. Please try again.")
        status, reason, headers, data = self.forward(body)
        if kind == "500-after":
            return self.reply_error(500, "InternalError", "We encountered an internal error. Please try again.")
        self.send_response_only(status, reason)
        for name, value in headers:
            # HEAD answers keep S3's Content-Length (the object's size); others announce the body read.
            if name.lower() != "content-length" or self.command == "HEAD":
                self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if kind == "reset-mid-body":
            self.wfile.write(data[: len(data) // 2])
            self.reset()
        if kind == "truncated-body":
            self.wfile.write(data[: len(data) * 2 // 3])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_WR)
            raise Aborted()
        self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (Aborted, ConnectionError, BrokenPipeError, TimeoutError)):
            super().handle_error(request, client_address)
