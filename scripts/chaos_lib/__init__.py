"""The parts of `scripts/chaos`, Tiergate's process-level chaos test, and of `scripts/stubchaos`, its stub adversary.

- `cluster`: the registered servers and their `tiergate serve` daemons (start, kill -9, SIGTERM, status).
- `fault_proxy`: an HTTP proxy in front of the S3 server that injects errors, resets and short bodies.
- `workload`: the seeded file-system operations and the model of every content they produced.
- `checks`: what is compared once the sync group is quiet (trees, lost writes, foreign content).
- `share_log`: every file version a `file://` share's log ever committed, read straight from its folder.
"""
