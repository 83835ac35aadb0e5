"""
What one client_credentials token request costs in oauthd's own code, in
process: no HTTP, an in-memory journal. Prints microseconds per request with
the audit event recorded three ways: in the daemon's audit trail (the
batched write happens off the request, so it is not counted), as a log
event through a text log observer (as under twistd without a trail), and
not at all. Asserts nothing.

    python bench/token_path.py [REQUESTS]      (default 20000)
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(requests: int) -> None:
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from oauthd.audit import AuditTrail, log_audit
    from oauthd.grants import ClientAuth, Grants
    from oauthd.limits import RateLimiter
    from tests.helpers import make_authority
    from tests.journal_doubles import InlinePool, InlineReactor

    work = tempfile.mkdtemp(prefix="oauthd-token-path-")
    log = open(os.path.join(work, "twistd.log"), "w")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(log)], redirectStandardIO=False,
                                     discardBuffer=True)
    authority = make_authority()
    trail = AuditTrail(work, authority.store._clock, InlineReactor(), pool=InlinePool())
    added: list[object] = []
    authority.add_client("bench", scope="metrics", max_tokens=10).addCallback(added.append)
    client, secret = added[0]  # type: ignore[misc]
    grants = Grants(authority, RateLimiter(authority.now))
    auth = ClientAuth(basic=(client.id, secret))
    params = {"grant_type": "client_credentials"}
    sinks = [
        ("audit trail", trail),
        ("audit as a twistd log line", log_audit),
        ("no audit", lambda *args: None),
    ]
    for _ in range(2):
        for name, sink in sinks:
            authority._audit_sink = sink  # type: ignore[assignment]
            answered: list[object] = []
            started = time.perf_counter()
            for _ in range(requests):
                grants.token(params, auth, "127.0.0.1").addCallback(answered.append)
            took = time.perf_counter() - started
            assert len(answered) == requests
            print(f"{name:28} {took / requests * 1e6:7.1f} us per token request")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
