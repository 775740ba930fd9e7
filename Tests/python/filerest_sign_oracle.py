#!/usr/bin/env python3
"""Signing oracle: the official Azure SDK (azure-storage-file-share) signs requests and SAS tokens offline.

Tiergate's Swift SharedKey signer and SAS generator are compared with this byte for byte. Reads one JSON
document on stdin:

  {"account": "...", "key": "<base64>",
   "requests": [{"method": "PUT", "url": "http://host/share/dir/file?comp=range", "headers": [["x-ms-date", "..."], ...]}],
   "sas": [{"kind": "account" | "share" | "file", "version": "2025-11-05", "permission": "rw", "expiry": "...",
            "start": null, "ip": null, "protocol": null, "resourceTypes": "sco", "services": "f",
            "share": "s", "path": "dir/file", "policyId": null}]}

and writes {"requests": [{"stringToSign", "authorization"}], "sas": [{"stringToSign", "token"}]} to stdout.
Nothing is sent anywhere: the SDK's SharedKeyCredentialPolicy runs on prepared pipeline requests.
"""

import json
import sys

from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.storage.fileshare._shared.authentication import SharedKeyCredentialPolicy
from azure.storage.fileshare._shared.shared_access_signature import SharedAccessSignature
from azure.storage.fileshare._shared_access_signature import FileSharedAccessSignature


class RecordingPolicy(SharedKeyCredentialPolicy):
    """The SDK's policy, keeping the string it signed."""

    string_to_sign = None

    def _add_authorization_header(self, request, string_to_sign):
        self.string_to_sign = string_to_sign
        super()._add_authorization_header(request, string_to_sign)


def sign_request(policy, spec):
    request = HttpRequest(spec["method"], spec["url"], headers=dict(spec["headers"]))
    policy.on_request(PipelineRequest(request, PipelineContext(None)))
    return {"stringToSign": policy.string_to_sign, "authorization": request.headers["Authorization"]}


def sign_sas(account, key, spec):
    captured = []
    common = dict(permission=spec["permission"], expiry=spec["expiry"], start=spec.get("start"), ip=spec.get("ip"),
                  protocol=spec.get("protocol"), sts_hook=captured.append)
    if spec["kind"] == "account":
        factory = SharedAccessSignature(account, key, x_ms_version=spec["version"])
        token = factory.generate_account(services=spec.get("services", "f"), resource_types=spec["resourceTypes"], **common)
    else:
        factory = FileSharedAccessSignature(account, key)
        factory.x_ms_version = spec["version"]
        if spec["kind"] == "share":
            token = factory.generate_share(spec["share"], policy_id=spec.get("policyId"), **common)
        else:
            directory, _, name = spec["path"].rpartition("/")
            token = factory.generate_file(spec["share"], directory_name=directory or None, file_name=name,
                                          policy_id=spec.get("policyId"), **common)
    return {"stringToSign": captured[0], "token": token}


def main():
    job = json.load(sys.stdin)
    policy = RecordingPolicy(job["account"], job["key"])
    result = {
        "requests": [sign_request(policy, spec) for spec in job.get("requests", [])],
        "sas": [sign_sas(job["account"], job["key"], spec) for spec in job.get("sas", [])],
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
