"""
What one client_credentials token request costs in oauthd's own code, in
process: no HTTP, an in-memory journal, the audit event written through a
text log observer as under twistd. Prints microseconds per request with and
without the audit event; asserts nothing.

    python bench/token_path.py [REQUESTS]      (default 20000)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(requests: int) -> None:
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from oauthd import grants as grants_module
    from oauthd.grants import ClientAuth, Grants
    from oauthd.limits import RateLimiter
    from tests.helpers import make_authority

    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(log)], redirectStandardIO=False,
                                     discardBuffer=True)
    authority = make_authority()
    added: list[object] = []
    authority.add_client("bench", scope="metrics", max_tokens=10).addCallback(added.append)
    client, secret = added[0]  # type: ignore[misc]
    grants = Grants(authority, RateLimiter(authority.now))
    auth = ClientAuth(basic=(client.id, secret))
    params = {"grant_type": "client_credentials"}
    for variant in ("with the audit event", "without the audit event"):
        if variant.startswith("without"):
            grants_module.audit = lambda *args, **kwargs: None  # type: ignore[assignment]
        answered: list[object] = []
        started = time.perf_counter()
        for _ in range(requests):
            grants.token(params, auth, "127.0.0.1").addCallback(answered.append)
        took = time.perf_counter() - started
        assert len(answered) == requests
        print(f"{variant:26} {took / requests * 1e6:7.1f} us per token request")
    os.unlink(log.name)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
