"""
oauthctl audit: the trail read through the control socket (filters, pages,
following it), its chain verified from where the journal says it begins
(edited, removed and reordered lines found at their line, a removed head
found by the journal's anchor), retention keeping the rest verifiable, and
bad input answered with what is wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from twisted.internet.defer import maybeDeferred
from twisted.protocols import amp
from twisted.python.failure import Failure
from treq.testing import StubTreq

from twisted.internet.threads import deferToThread

from oauthd.control import wire
from oauthd.control.wire import Busy, InvalidValue
from oauthd.ctl.cli import main
from oauthd.services.audit import FLUSH_SECONDS, TRAIL_NAME, AuditTrail, TrailLimits
from oauthd.eventlog import MemoryJournal
from oauthd.interfaces import AuditQuery
from oauthd.services.audit_files import GENESIS, chain_of, rotated_files
from oauthd.services.audit_reader import FOLLOW_WAIT, end_of, read_page
from oauthd.state.model import State, replay
from oauthd.tap import anchor_trail
from oauthd.testing import InlinePool, InlineReactor
from oauthd.web.api import OAuthHTTP
from tests.daemon import REPO, Daemon
from tests.helpers import START
from tests.test_control import Harness, Link
from tests.test_ctl import Live, Result, terminal
from tests.test_ctl_e2e import oauthctl

DAY = 86400


def inline(work: Any) -> Any:
    return maybeDeferred(work)


class Audited:
    """
    A control socket and the HTTP API over one server whose audit sink is a
    real trail in C{directory}, written and read inline, wired as the daemon
    wires it (L{anchor_trail}).
    """

    def __init__(
        self, directory: Path, limits: TrailLimits = TrailLimits(), max_bytes: int = wire.PAGE_BYTES,
        journal: MemoryJournal | None = None,
    ) -> None:
        self.directory = directory
        self.harness = Harness(journal=journal)
        self.clock = self.harness.clock
        self.server = self.harness.server
        self.trail = AuditTrail(str(directory), self.clock, InlineReactor(), pool=InlinePool(), limits=limits)
        self.trail.startService()
        self.server.store.audit_sink = self.trail
        self.reader = anchor_trail(self.trail, self.server.store, self.clock, run=inline)
        self.clock.advance(0)
        self.reader._max_bytes = max_bytes
        self.harness.factory.audit_reader = self.reader
        self.link = self.harness.connect()
        self.http = StubTreq(OAuthHTTP(self.server.ctx, self.server.store).resource())

    def post(self, path: str, form: dict[str, str], auth: tuple[str, str]) -> int:
        responses: list[Any] = []
        self.http.post("http://127.0.0.1:9478" + path, data=form, auth=auth).addBoth(responses.append)
        self.http.flush()
        (response,) = responses
        return int(response.code)

    def add_users(self, count: int, start: int = 0) -> None:
        """
        Add C{count} users, letting the trail write (a rotation takes a
        turn of the clock).
        """
        for n in range(start, start + count):
            asked = self.link.ask(wire.AddUser, name=f"user{n}")
            for _ in range(10):
                if asked:
                    break
                self.clock.advance(0)
                self.link.pump.flush()
            assert isinstance(asked[0], dict), asked

    def flush(self) -> None:
        """
        Write the events that wait for a batch.
        """
        self.clock.advance(FLUSH_SECONDS)

    def events(self, **arguments: Any) -> list[dict[str, Any]]:
        self.flush()
        return self.link.rows(wire.ReadAudit, **arguments)

    def verify(self) -> dict[str, Any]:
        self.flush()
        return self.link.call(wire.VerifyAudit)

    def files(self) -> list[Path]:
        return [self.directory / name for name in rotated_files(str(self.directory))] + [
            self.directory / TRAIL_NAME]


@pytest.fixture
def audited(tmp_path: Path) -> Audited:
    return Audited(tmp_path)


def actions(audited: Audited) -> dict[str, str]:
    """
    One of each kind of action, over the control socket and HTTP.
    """
    link = audited.link
    link.call(wire.AddUser, name="alice", password="correct horse")
    client = link.call(wire.AddClient, name="web", user="alice", grant_types=["client_credentials", "password"])
    link.call(wire.SetPassword, name="alice", password="battery staple")
    token = link.call(wire.AddToken, label="backup", scope="*", lifetime=600, user="alice")
    link.call(wire.RemoveToken, reference=token["handle"])
    link.call(wire.RotateKeys, alg="ES256", now=True)
    assert audited.post("/api/v1/oauth/token", {"grant_type": "client_credentials"},
                        (client["id"], client["secret"])) == 200
    assert audited.post("/api/v1/oauth/token", {"grant_type": "password", "username": "alice",
                        "password": "wrong"}, (client["id"], client["secret"])) == 400
    return {"client": client["id"], "handle": token["handle"]}


def test_every_kind_of_action_is_read_back_and_the_filters_select(audited: Audited) -> None:
    """
    Adding a user and a client, changing a password, issuing and revoking a
    token by hand, rotating a key, a token issued over HTTP and a failed
    password login all appear, oldest first; each filter selects its events.
    """
    made = actions(audited)
    events = audited.events()
    kinds = [(e["event"], e["outcome"]) for e in events]
    for wanted in [("user.add", "ok"), ("client.add", "ok"), ("user.password", "ok"), ("token.issue", "ok"),
                   ("token.revoke", "ok"), ("keys.rotate", "ok"), ("token.refuse", "denied")]:
        assert wanted in kinds
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert all("chain" not in e for e in events)
    issued = audited.events(event="token.issue")
    assert {e["event"] for e in issued} == {"token.issue"} and len(issued) == 2
    assert {e["event"] for e in audited.events(event="token")} == {"token.issue", "token.revoke", "token.refuse"}
    assert audited.events(event="token.*") == audited.events(event="token")
    assert audited.events(event="token.iss") == [] and audited.events(event="token.issue.*") == []
    assert {e["event"] for e in audited.events(event="user.*")} == {"user.add", "user.password"}
    by_client = audited.events(client=made["client"])
    assert by_client and all(made["client"] in (e.get("client"), e.get("client_id")) for e in by_client)
    assert {e["event"] for e in audited.events(user="alice")} >= {"user.add", "user.password"}
    assert audited.events(user="nobody") == []
    assert audited.events(since=START + 1.0) == [] and len(audited.events(until=float(START))) == len(events)
    refused = audited.events(event="token.refuse", user="alice")
    assert [e["outcome"] for e in refused] == ["denied"]


def test_pages_follow_the_cursor_across_a_rotation(tmp_path: Path) -> None:
    """
    Read two events a page while the trail rotates between pages: every
    event written when the reading began, once, in order (it ends there); a
    page never holds more than its bytes.
    """
    audited = Audited(tmp_path, TrailLimits(rotate_bytes=600), max_bytes=400)
    audited.add_users(6)
    written = audited.trail.written_seq
    seen: list[int] = []
    cursor = None
    rotated = len(rotated_files(str(tmp_path)))
    while True:
        page = audited.link.call(wire.ReadAudit, cursor=cursor, limit=2)
        assert len(page["rows"]) <= 400
        seen += [e["seq"] for e in json.loads(page["rows"])]
        cursor = page["cursor"] or None
        if len(seen) == 2:
            audited.add_users(6, start=6)
        if cursor is None:
            break
    assert len(rotated_files(str(tmp_path))) > rotated
    assert seen == list(range(1, written + 1))


def test_following_waits_for_new_events_and_holds_one_page(audited: Audited) -> None:
    """
    A following reading with no --since begins at the end: it answers when
    the next events are written (or with none after FOLLOW_WAIT); a second
    reading on the same connection meanwhile is refused; a lost connection
    ends the wait.
    """
    audited.link.call(wire.AddUser, name="before")
    waiting = audited.link.ask(wire.ReadAudit, follow=True)
    assert waiting == []
    error = audited.link.fails(wire.ReadAudit)
    assert isinstance(error, Busy)
    other = audited.harness.connect()
    other.call(wire.AddUser, name="after")
    audited.link.pump.flush()
    (answer,) = waiting
    assert [e["user"] for e in json.loads(answer["rows"])] == ["after"]
    quiet = audited.link.ask(wire.ReadAudit, follow=True, cursor=answer["cursor"])
    audited.clock.advance(FOLLOW_WAIT)
    audited.link.pump.flush()
    assert quiet == [{"rows": "[]", "cursor": answer["cursor"]}]
    audited.link.ask(wire.ReadAudit, follow=True, cursor=answer["cursor"])
    assert len(audited.trail._watchers) == 1
    audited.link.client.transport.loseConnection()
    audited.link.pump.flush()
    assert audited.trail._watchers == []


@pytest.mark.parametrize("arguments,message", [
    ({"since": -1.0}, "since must be a time"),
    ({"until": float("inf")}, "until must be a time"),
    ({"since": START + 10.0, "until": START + 0.0}, "since is after until"),
    ({"event": "bogus.thing"}, "unknown event bogus.thing"),
    ({"event": "Token Issue"}, "event must be an event name"),
    ({"limit": 0}, "limit must be between 1 and"),
    ({"limit": -5}, "limit must be between 1 and"),
    ({"cursor": "garbage"}, "unknown cursor"),
    ({"cursor": "1.3.0"}, "unknown cursor"),
])
def test_bad_arguments_are_answered_precisely(audited: Audited, arguments: dict[str, Any], message: str) -> None:
    audited.link.call(wire.AddUser, name="alice")
    error = audited.link.fails(wire.ReadAudit, **arguments)
    assert isinstance(error, InvalidValue) and message in str(error)


# ---------------------------------------------------------------------------
# Verifying


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


@pytest.mark.parametrize("damage,at", [
    ("edit", 3), ("delete", 3), ("reorder", 3),
])
def test_a_damaged_line_is_reported_at_that_line(audited: Audited, damage: str, at: int) -> None:
    """
    Editing, deleting or moving line 3 makes verify fail at line 3 of that
    file; before, it verifies.
    """
    audited.add_users(5)
    assert audited.verify()["file"] == ""
    path = audited.directory / TRAIL_NAME
    text = lines(path)
    if damage == "edit":
        text[at - 1] = text[at - 1].replace("user2", "userX")
    elif damage == "delete":
        del text[at - 1]
    else:
        text[at - 1], text[at] = text[at], text[at - 1]
    path.write_text("".join(text))
    found = audited.verify()
    assert (found["file"], found["line"]) == (str(path), at)
    assert "changed, removed or moved" in found["reason"]
    assert found["lines"] == at - 1


def test_an_edit_whose_chain_was_recomputed_is_found(audited: Audited) -> None:
    """
    The chain is a plain hash: whoever edits a line can compute the chain
    values of it and every later line again. The daemon knows the chain
    value of the last line it wrote, so verify still fails, at that line.
    """
    audited.add_users(5)
    path = audited.directory / TRAIL_NAME
    text = lines(path)
    head = GENESIS
    rechained = []
    for number, line in enumerate(text, 1):
        record = json.loads(line)
        if number == 3:
            record["user"] = "mallory"
        del record["chain"]
        body = json.dumps(record, separators=(",", ":")).encode()
        head = chain_of(head, body)
        rechained.append(body[:-1].decode() + f',"chain":"{head}"}}\n')
    path.write_text("".join(rechained))
    found = audited.verify()
    assert (found["file"], found["line"]) == (str(path), len(text))
    assert "not the one the daemon wrote" in found["reason"]


def test_a_rotated_file_cut_short_is_reported_at_its_cut_line(tmp_path: Path) -> None:
    """
    A line cut short in a rotated file is where the trail breaks: verify
    names that file and line, not the first line of the next file.
    """
    audited = Audited(tmp_path, TrailLimits(rotate_bytes=600))
    audited.add_users(6)
    path = audited.files()[0]
    assert path.name != TRAIL_NAME
    text = lines(path)
    path.write_text("".join(text[:-1]) + text[-1][:20])
    found = audited.verify()
    assert (found["file"], found["line"]) == (str(path), len(text))
    assert "cut short" in found["reason"]


def test_cutting_the_tail_is_found(audited: Audited) -> None:
    audited.add_users(3)
    path = audited.directory / TRAIL_NAME
    path.write_text("".join(lines(path)[:-1]))
    found = audited.verify()
    assert found["line"] == 3 and "its last lines were removed" in found["reason"]


def test_retention_anchors_the_trail_and_a_removed_head_is_found(tmp_path: Path) -> None:
    """
    Retention removes the oldest rotated files once the journal holds where
    the trail then begins: the rest verifies, from there, and so it does
    after a compaction and a restart; deleting the oldest kept file by hand
    is then found, at the first line of the file that is now the oldest.
    """
    limits = TrailLimits(rotate_bytes=500, keep_bytes=1500)
    audited = Audited(tmp_path, limits)
    audited.add_users(30)
    audited.flush()
    expired = [e for e in audited.events(event="audit") if e["event"] == "audit.expire"]
    assert expired
    anchor = audited.server.state.audit_anchor
    oldest = audited.files()[0]
    first = json.loads(lines(oldest)[0])
    assert (anchor.seq, anchor.previous) == (first["seq"], first["previous"])
    found = audited.verify()
    assert found["file"] == "" and found["anchor_seq"] == anchor.seq
    compacted: list[object] = []
    audited.server.store.compact().addBoth(compacted.append)
    assert compacted == [None]
    state = State()
    replay(state, audited.harness.journal.payloads, START)
    assert (state.audit_anchor.seq, state.audit_anchor.previous) == (anchor.seq, anchor.previous)
    oldest.unlink()
    found = audited.verify()
    now_oldest = audited.files()[0]
    assert (found["file"], found["line"]) == (str(now_oldest), 1)
    assert f"the journal says it begins at seq {anchor.seq}" in found["reason"]


def test_deleting_the_first_rotated_file_is_found_without_retention(tmp_path: Path) -> None:
    """
    With nothing removed by retention the trail must begin at seq 1: a
    deleted first file is found although the rest chains on.
    """
    audited = Audited(tmp_path, TrailLimits(rotate_bytes=500))
    audited.add_users(10)
    assert audited.verify()["file"] == ""
    audited.files()[0].unlink()
    found = audited.verify()
    assert found["line"] == 1 and "its oldest lines were removed" in found["reason"]


# ---------------------------------------------------------------------------
# oauthctl over a real socket


@pytest_twisted.ensureDeferred
async def test_oauthctl_audit(tmp_path: Path) -> None:
    """
    oauthctl audit prints a table or JSON lines, takes ISO 8601 and relative
    times (against the daemon's clock here), and verify exits 1 once a line
    is edited; bad options are usage errors, never tracebacks.
    """
    (tmp_path / "data").mkdir()
    audited = Audited(tmp_path / "data")
    live = Live(tmp_path, audited.harness, audit_reader=audited.reader)
    try:
        audited.link.call(wire.AddUser, name="alice")
        audited.clock.advance(2 * 3600)
        # (The first connection was idle for longer than its timeout.)
        audited.link = audited.harness.connect()
        audited.link.call(wire.AddClient, name="web")
        audited.flush()

        async def ctl(*argv: str) -> Result:
            term = terminal({"OAUTHD_SOCKET": str(live.path)})
            term.clock = audited.clock.seconds
            code = await deferToThread(main, list(argv), term)
            return Result(code, term.stdout.getvalue(), term.stderr.getvalue())  # type: ignore[attr-defined]

        table = await ctl("audit")
        assert table.code == 0 and "user.add" in table.out and "client.add" in table.out
        assert table.out.splitlines()[0].split() == ["Seq", "Time", "(UTC)", "Event", "Outcome", "Details"]
        recent = await ctl("audit", "--since", "1h", "--json")
        assert [json.loads(line)["event"] for line in recent.out.splitlines()] == ["client.add"]
        # START + 1 h, between the two changes: with an offset, and as UTC.
        for since in ("2027-01-15T10:00:00+01:00", "2027-01-15 09:00:00"):
            after = await ctl("audit", "--json", "--since", since)
            assert [json.loads(line)["event"] for line in after.out.splitlines()] == ["client.add"]
        before = await ctl("audit", "--json", "--until", "2027-01-15T09:00:00Z")
        assert [json.loads(line)["event"] for line in before.out.splitlines()] == ["user.add"]
        limited = await ctl("audit", "--json", "-n", "1")
        assert len(limited.out.splitlines()) == 1
        verified = await ctl("audit", "verify")
        assert verified.code == 0 and "verifies" in verified.out
        for argv, message in [
            (("audit", "--since", "yesterday"), "is not a time"),
            (("audit", "--until", "2026-13-45"), "is not a time"),
            (("audit", "--limit", "-1"), "is not 1 or more"),
            (("audit", "verify", "--since", "1h"), "--since does not apply"),
            (("audit", "--follow", "--until", "1h"), "takes no --until"),
        ]:
            result = await ctl(*argv)
            assert result.code == 2 and message in result.err and "Traceback" not in result.err
        unknown = await ctl("audit", "--event", "nonsense")
        assert unknown.code == 1 and "unknown event nonsense" in unknown.err
        path = audited.directory / TRAIL_NAME
        path.write_text(path.read_text().replace("alice", "mallory"))
        broken = await ctl("audit", "verify")
        assert broken.code == 1 and f"{path} line 1" in broken.out and f"{path} line 1" in broken.err
        as_json = await ctl("audit", "verify", "--json")
        assert as_json.code == 1 and json.loads(as_json.out)["intact"] is False
    finally:
        await live.stop()


def test_files_stay_while_the_journal_cannot_anchor_the_trail(tmp_path: Path) -> None:
    """
    Retention removes nothing whose removal the journal cannot record: with
    the journal failed, the rotated files stay and the trail still verifies.
    """
    audited = Audited(tmp_path, TrailLimits(rotate_bytes=500, keep_bytes=1500))
    audited.add_users(3)
    audited.harness.journal.fail(OSError(28, "No space left on device"))
    for n in range(40):
        audited.trail("control.connect", "denied", {"peer_uid": str(n)})
        audited.clock.advance(FLUSH_SECONDS)
    assert sum(path.stat().st_size for path in audited.files()) > 1500
    assert audited.server.state.audit_anchor.seq == 1
    assert [e for e in audited.events(event="audit.expire")] == []
    assert audited.verify()["file"] == ""


def test_a_trail_pruned_before_anchors_is_anchored_once_at_start(tmp_path: Path) -> None:
    """
    A trail whose first files an older oauthd removed (so the journal holds
    no anchor) is anchored where it begins when the daemon starts: it then
    verifies, and removing its new first file is found.
    """
    old = Audited(tmp_path, TrailLimits(rotate_bytes=500))
    old.add_users(12)
    old.flush()
    for path in old.files()[:2]:
        path.unlink()
    old.trail.stopService()
    restarted = Audited(tmp_path, TrailLimits(rotate_bytes=500))
    first = json.loads(lines(restarted.files()[0])[0])
    anchor = restarted.server.state.audit_anchor
    assert (anchor.seq, anchor.previous) == (first["seq"], first["previous"])
    assert restarted.verify()["file"] == ""
    restarted.files()[0].unlink()
    assert restarted.verify()["line"] == 1


# ---------------------------------------------------------------------------
# The real daemon


def test_oauthctl_audit_against_the_real_daemon(tmp_path: Path) -> None:
    """
    C{twistd -n oauthd} and oauthctl as separate processes: the events of
    the changes made are read back, a follower sees an event written after
    it started, verify exits 0, and 1 naming the line once a line is edited.
    """
    data = tmp_path / "data"
    daemon = Daemon(data)
    sock = data / "control.sock"
    try:
        assert oauthctl(sock, "users", "add", "alice", "--password-stdin", stdin="correct horse\n").returncode == 0
        handles = [json.loads(oauthctl(sock, "--json", "auth", "add", "--user", "alice", "--name", name,
                                       "--scope", "*").stdout)["handle"] for name in ("phone", "laptop")]
        assert oauthctl(sock, "auth", "rm", handles[0]).returncode == 0
        follower = subprocess.Popen(
            [sys.executable, "-m", "oauthd.ctl", "--socket", str(sock), "audit", "--follow", "--json",
             "--since", "1h", "--event", "token.revoke", "-n", "2"],
            env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert follower.stdout is not None
            first = follower.stdout.readline()
            # The follower has read what was written before it started; the
            # next event comes after.
            assert oauthctl(sock, "auth", "rm", handles[1]).returncode == 0
            rest, err = follower.communicate(timeout=30)
        finally:
            follower.kill()
        assert follower.returncode == 0, err
        assert [json.loads(line)["token"] for line in [first, *rest.splitlines()]] == handles
        listed = oauthctl(sock, "audit", "--json", "--user", "alice")
        assert {json.loads(line)["event"] for line in listed.stdout.splitlines()} >= {"user.add", "token.issue"}
        assert oauthctl(sock, "audit", "verify").returncode == 0
        trail = data / TRAIL_NAME
        text = trail.read_text().splitlines(keepends=True)
        line = next(n for n, t in enumerate(text, 1) if '"user.add"' in t)
        text[line - 1] = text[line - 1].replace("alice", "eve")
        trail.write_text("".join(text))
        broken = oauthctl(sock, "audit", "verify")
        assert broken.returncode == 1 and f"{trail} line {line}" in broken.stdout, broken
    finally:
        daemon.stop()


# ---------------------------------------------------------------------------
# The reader on files made by hand


def trail_lines(*records: dict[str, Any]) -> bytes:
    head = GENESIS
    out = b""
    for record in records:
        body = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        head = chain_of(head, body)
        out += body[:-1] + b',"chain":"' + head.encode("ascii") + b'"}\n'
    return out


def test_the_end_is_after_the_last_durable_line(tmp_path: Path) -> None:
    """
    A following reading begins after the last line made durable: a line in
    the file but still being written is yet to come.
    """
    text = trail_lines(*({"seq": n, "time": START, "event": "user.add", "outcome": "ok"} for n in (1, 2, 3)))
    (tmp_path / TRAIL_NAME).write_bytes(text)
    third = text.index(b'{"seq":3')
    assert end_of(str(tmp_path), 2) == (1, third)
    assert end_of(str(tmp_path), 3) == (1, len(text))
    page = read_page(str(tmp_path), AuditQuery(), (1, third, 0), 10, 3, wire.PAGE_BYTES)
    assert [json.loads(row)["seq"] for row in page.rows] == [3]


def test_hand_edited_lines_keep_pages_within_their_bytes(tmp_path: Path) -> None:
    """
    A line with non-ASCII text is sent as ASCII JSON (its size on the wire
    is its length); a line longer than any page is left out rather than
    stall the reading.
    """
    text = trail_lines(
        {"seq": 1, "time": START, "event": "user.add", "outcome": "ok", "user": "zoë" * 100},
        {"seq": 2, "time": START, "event": "user.add", "outcome": "ok", "user": "x" * 5000},
        {"seq": 3, "time": START, "event": "user.add", "outcome": "ok", "user": "y"},
    )
    (tmp_path / TRAIL_NAME).write_bytes(text)
    rows: list[str] = []
    position = (1, 0, 3)
    for _ in range(3):
        page = read_page(str(tmp_path), AuditQuery(), position, 10, 3, 4000)
        assert len("[" + ",".join(page.rows) + "]") <= 4000
        rows += page.rows
        position = page.position
        if page.at_end:
            break
    assert page.at_end and all(row.isascii() for row in rows)
    assert [json.loads(row)["user"] for row in rows] == ["zoë" * 100, "y"]


def test_since_skips_older_rotated_files(tmp_path: Path) -> None:
    """
    Events from --since on, across rotated files, whose older files the
    reading passes over by their last line.
    """
    audited = Audited(tmp_path, TrailLimits(rotate_bytes=500))
    for n in range(12):
        audited.add_users(1, start=n)
        audited.clock.advance(60)
    assert len(rotated_files(str(tmp_path))) >= 3
    since = START + 6 * 60.0
    every = audited.events()
    assert audited.events(since=since) == [e for e in every if e["time"] >= since]
    assert [e["user"] for e in audited.events(since=since, event="user.add")] == [
        f"user{n}" for n in range(6, 12)]


def test_a_trail_whose_head_goes_between_two_starts_is_not_anchored_again(tmp_path: Path) -> None:
    """
    The first start records the genesis anchor: a first file deleted while
    the daemon is down is found after the next start, not taken for one an
    older oauthd pruned.
    """
    old = Audited(tmp_path, TrailLimits(rotate_bytes=500))
    assert old.server.state.audit_anchor.recorded
    old.add_users(12)
    old.flush()
    old.trail.stopService()
    old.files()[0].unlink()
    restarted = Audited(tmp_path, TrailLimits(rotate_bytes=500),
                        journal=MemoryJournal(old.harness.journal.payloads))
    assert restarted.server.state.audit_anchor.seq == 1
    found = restarted.verify()
    assert found["line"] == 1 and "its oldest lines were removed" in found["reason"]


def test_every_event_the_daemon_writes_is_of_a_known_kind() -> None:
    """
    --event accepts the kinds of event the daemon writes (an event name's
    part before its first dot), and those are all in EVENT_KINDS: every
    event name given to an audit call in the package, and every kind the
    HTTP edge's refusals take.
    """
    import ast
    import re

    from oauthd.control.wire.audit import EVENT_KINDS
    from oauthd.web.api import _EVENTS

    calls = {"audit", "audited", "_audited", "commit_audited", "_commit_audited", "change", "_change",
             "record_change", "_append", "_bounded_append", "trail"}
    name = re.compile(r"[a-z0-9]+(\.[a-z0-9_]+)+")
    package = Path(__file__).resolve().parent.parent / "oauthd"
    kinds = set(_EVENTS.values()) | {"session", "http"}
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if called in calls:
                    kinds |= {arg.value.split(".")[0] for arg in node.args[:2]
                              if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                              and name.fullmatch(arg.value)}
    assert {"token", "client", "user", "keys", "audit", "control"} <= kinds
    assert kinds <= set(EVENT_KINDS), kinds - set(EVENT_KINDS)
