#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for Tiergate's S3 tests.

It forwards each request unchanged (Host header included, so SigV4 signatures stay valid) to the
upstream S3 server, and with probability --rate replaces the exchange by one fault of --kinds:

  slowdown  503 SlowDown, without forwarding (the request never reaches S3)
  error500  500 InternalError after forwarding (S3 did the work; only the answer is lost)
  reset     forwards, sends the headers and half the body, then resets the connection (RST)
  truncate  forwards, sends the headers (full Content-Length) and part of the body, then closes
  stall     forwards, then sends nothing for --stall-seconds before closing
  drop      forwards, then resets the connection without any answer (on a reused connection curl
            then resends the request by itself, so a write may reach S3 twice)

--fault-count N stops injecting random faults after N of them; --fault-methods limits them to
those methods (comma-separated).

--fail-query S and/or --fail-method M make matching requests (query string containing S, method M)
fail with --fail-status/--fail-code without forwarding, the first --fail-count times (default: always).
--tls-cert/--tls-key serve HTTPS instead of HTTP. GET /__proxy/stats answers with the counters.
Prints {"port": N} once listening; exits when stdin closes.
"""
import argparse
import http.client
import json
import random
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}


class Faults:
    def __init__(self, options):
        self.options = options
        self.random = random.Random(options.seed)
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "faults": 0}

    def count(self, name):
        with self.lock:
            self.stats[name] = self.stats.get(name, 0) + 1

    def forced(self, method, query):
        options = self.options
        if not (options.fail_query or options.fail_method):
            return False
        if (options.fail_query and options.fail_query not in query) or (options.fail_method and options.fail_method != method):
            return False
        with self.lock:
            if options.fail_count is not None and self.stats.get("forced", 0) >= options.fail_count:
                return False
            self.stats["forced"] = self.stats.get("forced", 0) + 1
            return True

    def pick(self, method):
        if self.options.fault_methods and method not in self.options.fault_methods.split(","):
            with self.lock:
                self.stats["requests"] += 1
            return None
        with self.lock:
            self.stats["requests"] += 1
            if self.options.fault_count is not None and self.stats["faults"] >= self.options.fault_count:
                return None
            if self.random.random() >= self.options.rate:
                return None
            self.stats["faults"] += 1
            kind = self.random.choice(self.options.kinds)
            self.stats[kind] = self.stats.get(kind, 0) + 1
            return kind


class Aborted(Exception):
    pass


def error_document(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f'<RequestId>fault-proxy</RequestId></Error>').encode()


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    faults: Faults = None
    upstream = None

    def log_message(self, *args):
        pass

    def do_GET(self): self.relay()
    def do_PUT(self): self.relay()
    def do_POST(self): self.relay()
    def do_DELETE(self): self.relay()
    def do_HEAD(self): self.relay()

    def reply(self, status, headers, body, send_body=True):
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if send_body and self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def reset(self):
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise Aborted()

    def relay(self):
        options = self.faults.options
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/__proxy/stats":
            with self.faults.lock:
                data = json.dumps(self.faults.stats).encode()
            self.reply(200, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))], data)
            return
        query = self.path.partition("?")[2]
        if self.faults.forced(self.command, query):
            document = error_document(options.fail_code, "Injected by the fault proxy")
            self.reply(options.fail_status, [("Content-Type", "application/xml"), ("Content-Length", str(len(document)))], document)
            return
        kind = self.faults.pick(self.command)
        if kind == "slowdown":
            document = error_document("SlowDown", "Please reduce your request rate.")
            self.reply(503, [("Content-Type", "application/xml"), ("Content-Length", str(len(document)))], document)
            return

        connection = http.client.HTTPConnection(self.upstream[0], self.upstream[1], timeout=120)
        connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in HOP_BY_HOP:
                connection.putheader(name, value)
        connection.endheaders(body if body else None)
        response = connection.getresponse()
        data = response.read()
        headers = [(n, v) for n, v in response.getheaders() if n.lower() not in HOP_BY_HOP and n.lower() != "content-length"]
        connection.close()
        headers.append(("Content-Length", response.getheader("Content-Length") if self.command == "HEAD" and response.getheader("Content-Length") else str(len(data))))

        if kind == "error500":
            document = error_document("InternalError", "We encountered an internal error. Please try again.")
            self.reply(500, [("Content-Type", "application/xml"), ("Content-Length", str(len(document)))], document)
        elif kind == "reset":
            self.reply(response.status, headers, data[: len(data) // 2])
            self.reset()
        elif kind == "truncate":
            self.reply(response.status, headers, data[: len(data) * 2 // 3])
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_WR)
            raise Aborted()
        elif kind == "drop":
            self.reset()
        elif kind == "stall":
            time.sleep(options.stall_seconds)
            self.close_connection = True
            raise Aborted()
        else:
            self.reply(response.status, headers, data)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (Aborted, ConnectionError, BrokenPipeError, ssl.SSLError)):
            super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--kinds", default="slowdown,error500,reset,truncate,stall,drop")
    parser.add_argument("--stall-seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--fail-query", default="")
    parser.add_argument("--fail-status", type=int, default=400)
    parser.add_argument("--fail-code", default="InvalidRequest")
    parser.add_argument("--fault-count", type=int, default=None)
    parser.add_argument("--fault-methods", default="")
    parser.add_argument("--fail-method", default="")
    parser.add_argument("--fail-count", type=int, default=None)
    parser.add_argument("--tls-cert", default="")
    parser.add_argument("--tls-key", default="")
    options = parser.parse_args()
    options.kinds = [k for k in options.kinds.split(",") if k]
    host, _, port = options.upstream.rpartition(":")
    ProxyHandler.faults = Faults(options)
    ProxyHandler.upstream = (host, int(port))
    server = Server(("127.0.0.1", 0), ProxyHandler)
    if options.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(options.tls_cert, options.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        sys.stdin.read()
    finally:
        server.shutdown()


if __name__ == "__main__":
    try:
        import ctypes, signal
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # die with the test process
    except OSError:
        pass
    main()
