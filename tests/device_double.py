"""
A device for the device-flow interop test, run as its own process with
nothing of oauthd: it reads the server's metadata, asks for a device code,
prints what a screen would show (one JSON line), then polls (a line per
refused poll) the token
endpoint as RFC 8628 section 3.5 asks: every C{interval} seconds, five more
after each C{slow_down}. Once, right after its first poll, it polls again
at once (a device whose timer misfired), to see C{slow_down} and honour it.
Its last line is the outcome: the errors it got, the waits it kept, the
tokens.

    python tests/device_double.py BASE_URL CLIENT_ID
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def post(url: str, form: dict[str, str]) -> tuple[int, Any]:
    data = urllib.parse.urlencode(form).encode("ascii")
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def main(base: str, client_id: str) -> None:
    with urllib.request.urlopen(base + "/.well-known/oauth-authorization-server", timeout=10) as r:
        metadata = json.load(r)
    assert GRANT in metadata["grant_types_supported"], metadata
    status, started = post(metadata["device_authorization_endpoint"], {"client_id": client_id})
    assert status == 200, started
    print(json.dumps({"user_code": started["user_code"],
                      "verification_uri_complete": started["verification_uri_complete"]}), flush=True)
    interval = started["interval"]
    deadline = time.monotonic() + started["expires_in"]
    errors: list[str] = []
    waits: list[float] = []
    misfire = True
    while time.monotonic() < deadline:
        if not misfire or not errors:
            before = time.monotonic()
            time.sleep(interval)
            waits.append(time.monotonic() - before)
        elif misfire:
            misfire = False
        status, body = post(metadata["token_endpoint"], {
            "grant_type": GRANT, "device_code": started["device_code"], "client_id": client_id})
        if status == 200:
            print(json.dumps({"errors": errors, "waits": waits, "interval": interval, "token": body}))
            return
        errors.append(body["error"])
        print(json.dumps({"poll": body["error"]}), flush=True)
        if body["error"] == "slow_down":
            interval += 5
        elif body["error"] != "authorization_pending":
            break
    print(json.dumps({"errors": errors, "waits": waits, "interval": interval, "token": None}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
