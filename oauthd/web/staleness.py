"""
How stale a node's state may be: on a shared event log (L{IFollowedLog}),
the state in memory is as fresh as the node's last contact with the log.
Past C{eventlog_max_lag} seconds without it, bearer checks and
introspection answer 503 with C{Retry-After} (a revocation made on another
node may be missing), rather than trust memory for ever; C{/healthz} says
the lag.  A local journal is never stale.
"""

from __future__ import annotations

from oauthd.interfaces import IEventLog, IFollowedLog
from oauthd.protocol import errors

__all__ = ["check_fresh", "log_health"]


def check_fresh(log: IEventLog, max_lag: float) -> None:
    """
    Refuse a read that must not be answered from a state older than
    C{max_lag} seconds.

    @raise OAuthError: C{temporarily_unavailable}, 503, with C{Retry-After}.
    """
    if not IFollowedLog.providedBy(log):
        return
    followed = IFollowedLog(log)
    lag = followed.lag()
    if followed.failure is not None or (lag is not None and lag > max_lag):
        raise errors.deny(errors.temporarily_unavailable(
            "this server has not reached its shared event log recently; try again"), reason="eventlog: stale")


def log_health(log: IEventLog, max_lag: float) -> tuple[dict[str, object], str | None]:
    """
    The event log's part of C{/healthz}: its lag and reachability (nothing
    for a local journal), and why it makes the node fail, if it does.
    """
    if not IFollowedLog.providedBy(log):
        return {}, None
    followed = IFollowedLog(log)
    lag = followed.lag()
    health: dict[str, object] = {"eventlog": {"lag": None if lag is None else round(lag, 3), "max_lag": max_lag,
                                              "reachable": bool(followed.reachable)}}
    if followed.failure is not None:
        return health, str(followed.failure)
    if lag is not None and lag > max_lag:
        return health, f"the shared event log was last reached {lag:.1f} s ago (eventlog_max_lag is {max_lag:g})"
    return health, None
