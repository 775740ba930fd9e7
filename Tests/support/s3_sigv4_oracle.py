#!/usr/bin/env python3
"""botocore as a reference signer for Tiergate's SigV4 tests.

Reads a JSON list of S3 requests (raw key, query parameters, headers, body, credentials, time) from
the file named by argv[1], builds each one the way botocore's S3 client does (keys percent-encoded
with botocore.utils.percent_encode, query parameters encoded by the signer), signs it with
botocore.auth.S3SigV4Auth at the given time, and prints a JSON list with the canonical request, the
string to sign, the signature, the Authorization header and the path botocore would send.
"""
import json
import sys

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode


def url_for(case):
    authority = case["host"] + (f":{case['port']}" if case.get("port") else "")
    key = case.get("key")
    if case["style"] == "path":
        url = f"{case['scheme']}://{authority}/{case['bucket']}"
        return url + ("/" + percent_encode(key, safe="/~") if key is not None else "")
    url = f"{case['scheme']}://{case['bucket']}.{authority}/"
    return url + (percent_encode(key, safe="/~") if key is not None else "")


def sign(case):
    request = AWSRequest(method=case["method"], url=url_for(case), data=bytes.fromhex(case["bodyHex"]),
                         params=[tuple(pair) for pair in case["query"]])
    for name, value in case["headers"]:
        request.headers[name] = value  # email.message semantics: appends, so duplicates are kept
    request.context["client_config"] = Config(s3={"payload_signing_enabled": case["signPayload"]})
    request.context["timestamp"] = case["timestamp"]
    credentials = Credentials(case["accessKeyId"], case["secretAccessKey"], case.get("sessionToken"))
    auth = S3SigV4Auth(credentials, "s3", case["region"])
    # The steps of add_auth, with the intermediate forms kept.
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical)
    signature = auth.signature(string_to_sign, request)
    auth._inject_signature_to_request(request, signature)
    from urllib.parse import urlsplit
    return {"canonicalRequest": canonical, "stringToSign": string_to_sign, "signature": signature,
            "authorization": request.headers["Authorization"], "path": urlsplit(request.url).path}


def main():
    with open(sys.argv[1], encoding="utf-8") as file:
        cases = json.load(file)
    json.dump([sign(case) for case in cases], sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
