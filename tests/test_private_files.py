"""
Tests for how oauthd opens its private files and checks its data directory:
a symbolic link, a FIFO, a file of another user's or one open to others,
planted in the data directory by whoever controls it, is refused and left
exactly as it was (content and mode); a data directory must belong to the
user oauthd runs as or to root.  Run through the real interfaces: the
daemon's start (L{tap.build_service}) and oauthctl's repair helper
(C{python -m oauthd.eventlog.repair DIR}).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from oauthd import tap
from oauthd.config import ConfigError, build_config
from oauthd.eventlog import JOURNAL_NAME, LOCK_NAME
from oauthd.eventlog.files import UnsafeFile, make_private_directory, open_private
from oauthd.testing import InlinePool
from tests.helpers import InlineMemoryReactor
from tests.journal_doubles import open_inline

REPO = Path(__file__).resolve().parent.parent
VICTIM_TEXT = b"root:precious:data"  # no newline: a half line to the audit trail
OTHER_UID = 4242
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")


def victim(tmp_path: Path) -> Path:
    """
    A file of someone else's, outside the data directory, world-readable.
    """
    path = tmp_path / "elsewhere" / "victim"
    path.parent.mkdir()
    path.write_bytes(VICTIM_TEXT)
    path.chmod(0o644)
    return path


def assert_untouched(path: Path) -> None:
    assert path.read_bytes() == VICTIM_TEXT
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def existing_data(tmp_path: Path) -> Path:
    """
    A data directory holding a journal, its lock and an audit trail, as a
    daemon that has run and stopped leaves it.
    """
    data = tmp_path / "data"
    open_inline(str(data)).close()
    (data / "audit.log").write_bytes(b"")
    (data / "audit.log").chmod(0o600)
    return data


def as_another_users(path: Path) -> int:
    """
    Make C{path} another user's, as far as the checks go: root gives it to
    L{OTHER_UID}; anyone else keeps it and checks as L{OTHER_UID} (the
    injected running user).

    @return: the uid to check as.
    """
    if os.geteuid() == 0:
        os.chown(path, OTHER_UID, OTHER_UID)
        return 0
    return OTHER_UID


def start(data: Path, euid: int | None = None) -> tap.Daemon:
    config = build_config({"data": str(data), "listen": ["tcp:0:interface=127.0.0.1"]})
    return tap.build_service(config, InlineMemoryReactor(), journal_pool=InlinePool(), euid=euid)


def run_repair(data: Path) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "oauthd.eventlog.repair", str(data)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.stderr == ""
    return result.returncode, str(json.loads(result.stdout)["error"])


@pytest.mark.parametrize("name", [LOCK_NAME, JOURNAL_NAME, "audit.log"])
def test_start_refuses_a_planted_symlink(tmp_path: Path, name: str) -> None:
    """
    A data file replaced by a symbolic link to another file stops the start
    with one line naming the link, and the file it points at is neither
    truncated, written nor chmod'ed.
    """
    data = existing_data(tmp_path)
    target = victim(tmp_path)
    os.unlink(data / name)
    os.symlink(target, data / name)
    with pytest.raises(ConfigError) as raised:
        start(data)
    message = str(raised.value)
    assert f"{data / name} is a symbolic link" in message
    assert "\n" not in message
    assert_untouched(target)


def test_repair_refuses_a_planted_lock_symlink(tmp_path: Path) -> None:
    """
    oauthctl's repair helper, given a data directory whose lock file is a
    link to another file, refuses and leaves that file as it was (the lock
    used to be truncated, given our pid and made 0600).
    """
    data = existing_data(tmp_path)
    target = victim(tmp_path)
    os.unlink(data / LOCK_NAME)
    os.symlink(target, data / LOCK_NAME)
    status, error = run_repair(data)
    assert status == 1
    assert f"{data / LOCK_NAME} is a symbolic link" in error
    assert_untouched(target)


def test_repair_refuses_a_planted_journal_symlink(tmp_path: Path) -> None:
    """
    Nor does repair read (and keep a copy of) a journal that is a link.
    """
    data = existing_data(tmp_path)
    target = victim(tmp_path)
    os.unlink(data / JOURNAL_NAME)
    os.symlink(target, data / JOURNAL_NAME)
    status, error = run_repair(data)
    assert status == 1
    assert f"{data / JOURNAL_NAME} is a symbolic link" in error
    assert_untouched(target)
    assert sorted(os.listdir(data)) == sorted([JOURNAL_NAME, LOCK_NAME, "audit.log"])


def test_start_refuses_a_fifo(tmp_path: Path) -> None:
    """
    A FIFO in place of the journal is not opened as one.
    """
    data = existing_data(tmp_path)
    os.unlink(data / JOURNAL_NAME)
    os.mkfifo(data / JOURNAL_NAME, 0o600)
    with pytest.raises(ConfigError, match="is not a regular file"):
        start(data)


def test_loose_file_refused_not_chmoded(tmp_path: Path) -> None:
    """
    An existing journal others can read is refused, with the command that
    fixes it; oauthd does not change the mode of a file it did not create.
    """
    data = existing_data(tmp_path)
    (data / JOURNAL_NAME).chmod(0o644)
    with pytest.raises(ConfigError) as raised:
        start(data)
    assert f"chmod 600 {data / JOURNAL_NAME}" in str(raised.value)
    assert stat.S_IMODE((data / JOURNAL_NAME).stat().st_mode) == 0o644


def test_loose_directory_refused_not_chmoded(tmp_path: Path) -> None:
    """
    An existing data directory open to others is refused and left as it
    is (it could be /etc given by mistake).
    """
    data = existing_data(tmp_path)
    data.chmod(0o755)
    with pytest.raises(ConfigError) as raised:
        start(data)
    assert f"chmod 700 {data}" in str(raised.value)
    assert stat.S_IMODE(data.stat().st_mode) == 0o755


def test_new_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """
    What oauthd creates is 0700 (the directory) and 0600 (the files), even
    under umask 0.
    """
    old = os.umask(0)
    try:
        start(tmp_path / "fresh")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
    for name in (JOURNAL_NAME, LOCK_NAME, "audit.log"):
        assert stat.S_IMODE((tmp_path / "fresh" / name).stat().st_mode) == 0o600, name


def test_directory_of_another_user_refused(tmp_path: Path) -> None:
    """
    A data directory owned neither by the user oauthd runs as nor by root
    is refused with a message naming its owner and what to do.
    """
    data = existing_data(tmp_path)
    euid = as_another_users(data)
    owner = data.stat().st_uid
    with pytest.raises(ConfigError) as raised:
        start(data, euid=euid)
    message = str(raised.value)
    assert f"{data} belongs to uid {owner}" in message or f"(uid {owner}), not to" in message
    assert "run it (and oauthctl repair) as its owner" in message
    with pytest.raises(UnsafeFile, match="belongs to"):
        make_private_directory(str(data), euid=euid)


def test_control_socket_directory_of_another_user_refused(tmp_path: Path) -> None:
    """
    So is the directory the control socket goes in.
    """
    sockets = tmp_path / "run"
    sockets.mkdir(mode=0o700)
    euid = as_another_users(sockets)
    config = build_config({
        "data": str(tmp_path / "data"), "control": f"unix:{sockets}/control.sock:mode=600",
    })
    with pytest.raises(ConfigError, match=f"control: {sockets} belongs to"):
        tap.build_service(config, InlineMemoryReactor(), journal_pool=InlinePool(), euid=euid)


@needs_root
def test_data_directory_linked_by_another_user_refused(tmp_path: Path) -> None:
    """
    A data directory that is a symbolic link another user made (to a
    directory of root's, say) is refused, naming the link; a link of the
    running user's (an administrator's choice) is followed.
    """
    target = tmp_path / "roots"
    target.mkdir(mode=0o700)
    link = tmp_path / "data"
    link.symlink_to(target)
    make_private_directory(str(link))
    os.lchown(link, OTHER_UID, OTHER_UID)
    with pytest.raises(ConfigError, match=rf"{link} \(a symbolic link\) belongs to uid {OTHER_UID}"):
        start(link)
    assert os.listdir(target) == []


def test_own_or_root_directory_accepted(tmp_path: Path) -> None:
    """
    A directory of the running user's is accepted, and so is one of root's
    whoever runs (root controls everything anyway).
    """
    mine = tmp_path / "mine"
    make_private_directory(str(mine))
    if os.stat(mine).st_uid == 0:
        make_private_directory(str(mine), euid=OTHER_UID)


@needs_root
def test_root_repair_refuses_the_daemon_users_directory(tmp_path: Path) -> None:
    """
    The case as found: root runs oauthctl repair on a data directory its
    daemon's user owns, in which that user planted a link to root's file.
    It is refused for whose the directory is, and the file is untouched.
    """
    data = existing_data(tmp_path)
    target = victim(tmp_path)
    os.unlink(data / LOCK_NAME)
    os.symlink(target, data / LOCK_NAME)
    os.chown(data, OTHER_UID, OTHER_UID)
    status, error = run_repair(data)
    assert status == 1
    assert f"{data} belongs to uid {OTHER_UID}" in error
    assert_untouched(target)


@needs_root
def test_file_of_another_user_refused(tmp_path: Path) -> None:
    """
    An existing file of another user's (a hard link to it, say) is refused.
    """
    path = tmp_path / "theirs"
    path.write_bytes(b"x")
    path.chmod(0o600)
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafeFile, match=f"belongs to uid {OTHER_UID}"):
        open_private(str(path), os.O_RDWR)


def test_start_refuses_a_planted_rotated_audit_file(tmp_path: Path) -> None:
    """
    With the active audit file empty, the trail's chain goes on from the
    newest rotated file: a link planted in its place is refused, not read
    (its target's last line would be hashed into the trail).
    """
    data = existing_data(tmp_path)
    rotated = data / "audit.log.0000000000000005"
    target = victim(tmp_path)
    os.symlink(target, rotated)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        start(data)
    assert_untouched(target)


def test_start_refuses_a_rotated_audit_fifo(tmp_path: Path) -> None:
    data = existing_data(tmp_path)
    os.mkfifo(data / "audit.log.0000000000000005", 0o600)
    with pytest.raises(ConfigError, match="is not a regular file"):
        start(data)


def test_verifying_the_trail_does_not_follow_links(tmp_path: Path) -> None:
    from oauthd.services.audit_files import verify_trail

    data = existing_data(tmp_path)
    os.symlink(victim(tmp_path), data / "audit.log.0000000000000001")
    with pytest.raises(UnsafeFile, match="is a symbolic link"):
        verify_trail(str(data))
