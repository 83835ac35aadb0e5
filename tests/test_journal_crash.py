"""
Crash test: a writer process (tests/journal_writer.py, a real reactor and a
real writer thread) appends under load and is SIGKILLed at random moments,
some of them during compaction.  After every kill the journal must reopen
with every acknowledged record, as a gap-free prefix of what was attempted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from attrs import define

from oauthd.eventlog import JOURNAL_NAME
from tests.journal_doubles import read_journal, temp_exists
from tests.journal_writer import sequence_number

REPO = Path(__file__).resolve().parent.parent
WRITER = REPO / "tests" / "journal_writer.py"
TRIALS = int(os.environ.get("JOURNAL_CRASH_TRIALS", "60"))
LANES = 2
TRIALS_PER_DIRECTORY = 10
WRITERS = 16


class Zygote:
    """
    A C{journal_writer.py serve} process that forks writers on request.
    """

    def __init__(self, stderr: Path) -> None:
        self.stderr = open(stderr, "w")
        self.process = subprocess.Popen(
            [sys.executable, str(WRITER), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=REPO,
        )

    def ask(self, *words: object) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(" ".join(map(str, words)) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, "the writer server died; see its stderr"
        return answer.split()[1]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)
        self.stderr.close()


@define
class Outcome:
    acknowledged: int = 0
    mid_compaction: int = 0
    torn_tails: int = 0
    compaction_trials: int = 0


def wait_for_ready(out: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if out.exists() and out.read_bytes().startswith(b"ready"):
            return
        if out.exists() and out.read_bytes().startswith(b"error"):
            raise AssertionError(out.read_text())
        time.sleep(0.002)
    raise AssertionError("the writer never became ready")


def lane(number: int, trials: int, base: Path) -> Outcome:
    rng = random.Random(f"journal crash lane {number} {os.getpid()}")
    outcome = Outcome()
    zygote = Zygote(base / f"lane{number}.stderr")
    try:
        for trial in range(trials):
            if trial % TRIALS_PER_DIRECTORY == 0:
                directory = base / f"lane{number}-data{trial}"
            compact = trial % 2 == 1
            out = base / f"lane{number}-trial{trial}.out"
            pid = int(
                zygote.ask("run", directory, out, int(compact), WRITERS, rng.randrange(1 << 30))
            )
            try:
                wait_for_ready(out, time.monotonic() + 20)
                time.sleep(rng.uniform(0.02, 0.25))
            finally:
                os.kill(pid, signal.SIGKILL)
                status = int(zygote.ask("wait", pid))
            assert os.WIFSIGNALED(status), f"writer exited early: {out.read_text()[-500:]}"
            check_trial(str(directory), out.read_text().splitlines(), compact, outcome)
    finally:
        zygote.close()
    return outcome


def check_trial(directory: str, lines: list[str], compact: bool, outcome: Outcome) -> None:
    errors = [line for line in lines if line.startswith("error")]
    assert errors == [], errors
    first = int(lines[0].split()[1])
    acknowledged = [int(line) for line in lines[1:] if line.isdigit()]
    assert acknowledged == list(range(first, first + len(acknowledged)))

    size_before = os.path.getsize(os.path.join(directory, JOURNAL_NAME))
    replayed = [sequence_number(p) for p in read_journal(directory)]
    if os.path.getsize(os.path.join(directory, JOURNAL_NAME)) < size_before:
        outcome.torn_tails += 1
    assert replayed == list(range(len(replayed))), "not a gap-free prefix"
    if acknowledged:
        assert acknowledged[-1] < len(replayed), (
            f"acknowledged record {acknowledged[-1]} lost;"
            f" only {len(replayed)} records survived"
        )
    assert not temp_exists(directory)

    outcome.acknowledged += len(acknowledged)
    if compact:
        outcome.compaction_trials += 1
        started = sum(line.startswith("compacting") for line in lines)
        finished = sum(line == "compacted" for line in lines)
        outcome.mid_compaction += started > finished


def test_kill_at_random_moments(tmp_path: Path) -> None:
    """
    Over many trials (half of them compacting continuously), a writer is
    SIGKILLed after a random 20-250 ms of appending; every time, reopening
    keeps every acknowledged record and replays 0..n in order, and no
    temporary file survives the reopen.
    """
    per_lane = [TRIALS // LANES + (i < TRIALS % LANES) for i in range(LANES)]
    with ThreadPoolExecutor(LANES) as executor:
        outcomes = list(
            executor.map(lambda i: lane(i, per_lane[i], tmp_path), range(LANES))
        )
    total = Outcome(
        acknowledged=sum(o.acknowledged for o in outcomes),
        mid_compaction=sum(o.mid_compaction for o in outcomes),
        torn_tails=sum(o.torn_tails for o in outcomes),
        compaction_trials=sum(o.compaction_trials for o in outcomes),
    )
    print(f"\n{TRIALS} kills: {total}")
    assert total.acknowledged > TRIALS, "the writers hardly wrote anything"
    assert total.mid_compaction >= 1, "no kill landed during a compaction"
