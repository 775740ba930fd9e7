"""The registered servers of one sync group and their `tiergate serve` daemons.

Every child runs in its own process group (so kill -9 reaches anything it started, and Ctrl-C on the
harness does not hit the daemons before the harness can record how they ended). A daemon that exits
without the harness having killed it is a crash, recorded with its exit status and the tail of its log.
"""
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass


def describe_exit(code):
    if code is None:
        return "did not exit within the timeout (killed)"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


@dataclass
class Crash:
    server: str
    incarnation: int
    when: str
    exit: str
    log_tail: str


class Server:
    """One registered server: its state directory, its endpoint folder and its daemon's log."""

    def __init__(self, name, workdir, binary, env):
        self.name, self.binary, self.env = name, binary, env
        self.root = os.path.join(workdir, "endpoints", name)
        self.state_dir = os.path.join(workdir, "state", name)
        self.log_path = os.path.join(workdir, "logs", f"{name}.log")
        self.process = None
        self.incarnation = 0
        for path in (self.root, self.state_dir, os.path.dirname(self.log_path)):
            os.makedirs(path, exist_ok=True)

    def cli(self, *args, timeout=300):
        """Runs one `tiergate` command with this server's state directory."""
        return subprocess.run([self.binary, *args, "--state-dir", self.state_dir], capture_output=True, text=True,
                              env=self.env, timeout=timeout, start_new_session=True)

    def start(self):
        self.incarnation += 1
        with open(self.log_path, "a") as log:
            log.write(f"=== chaos: serve started, incarnation {self.incarnation}, {time.strftime('%H:%M:%S')} ===\n")
            self.process = subprocess.Popen([self.binary, "serve", "--state-dir", self.state_dir], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    @property
    def running(self):
        return self.process is not None

    def kill(self):
        """kill -9 of the daemon's process group."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None
        self.note("killed with SIGKILL by the harness")

    def terminate(self, timeout=60):
        """SIGTERM, as an administrator stops the daemon; returns its exit status (None if it hung)."""
        process, self.process = self.process, None
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return None

    def exited(self):
        """The exit status of a daemon that ended by itself (None while it runs or when there is none)."""
        if self.process is None or self.process.poll() is None:
            return None
        code, self.process = self.process.returncode, None
        return code

    def note(self, text):
        with open(self.log_path, "a") as log:
            log.write(f"=== chaos: {text}, {time.strftime('%H:%M:%S')} ===\n")

    def log_tail(self, lines=4, frames=6):
        """The last incarnation's log cut to what says why it ended: its last log lines, the crash or fatal-error
        lines, and the first backtrace frames in Tiergate's own code, of the crashed thread when the backtrace
        names one (a Swift backtrace runs to hundreds of lines, and lists every thread)."""
        with open(self.log_path, errors="replace") as log:
            text = log.read().splitlines()
        starts = [i for i, line in enumerate(text) if line.startswith("=== chaos: serve started")]
        text = [line for line in text[starts[-1] if starts else 0:] if line.strip()]
        plain = [line for line in text if re.match(r"\d{4}-\d\d-\d\dT|tiergate: ", line)]
        why = [line for line in text if re.search(r"Program crashed|Fatal error|terminate called|crashed:|panic", line)]
        crashed = next((i for i, line in enumerate(text) if re.match(r"Thread \d+ .*crashed:", line)), 0)
        own = [line.strip() for line in text[crashed:] if " in tiergate at " in line][:frames]
        return "\n".join(dict.fromkeys(plain[-lines:] + why + own)) + "\n"

    def status(self):
        """This server's single endpoint from `status --json`, or {"error": …} when the command failed."""
        result = self.cli("status", "--json", timeout=60)
        try:
            return json.loads(result.stdout)[0]
        except (ValueError, IndexError):
            return {"error": (result.stderr or result.stdout).strip()}

    def errors(self):
        result = self.cli("errors", "--json", timeout=60)
        try:
            return json.loads(result.stdout)
        except ValueError:
            return [{"path": "?", "kind": "errors command failed", "reason": result.stderr.strip()}]


class Cluster:
    """The servers, plus the crashes seen so far."""

    def __init__(self, servers):
        self.servers = servers
        self.crashes = []
        self.kills = 0

    def __iter__(self):
        return iter(self.servers)

    def reap(self, restart=True):
        """Records daemons that exited by themselves, and restarts them so the run goes on."""
        for server in self.servers:
            code = server.exited()
            if code is not None:
                server.note(f"exited by itself: {describe_exit(code)}")
                self.crashes.append(Crash(server.name, server.incarnation, "exited by itself", describe_exit(code),
                                          server.log_tail()))
                if restart:
                    server.start()

    def kill(self, server):
        self.kills += 1
        server.kill()

    def stop_all(self):
        """SIGTERM every daemon; anything but a clean exit is a crash (one of the known failure modes)."""
        self.reap(restart=False)
        for server in self.servers:
            if server.running:
                code = server.terminate()
                server.note(f"stopped with SIGTERM: {describe_exit(code)}")
                if code != 0:
                    self.crashes.append(Crash(server.name, server.incarnation, "on SIGTERM", describe_exit(code),
                                              server.log_tail()))

    def cleanup(self):
        for server in self.servers:
            if server.process is not None:
                try:
                    os.killpg(server.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                server.process.wait()
                server.process = None
