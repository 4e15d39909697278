"""Atomic writes survive kills: a file or folder is the old one or the new one, never half of
either, and what a killed writer left behind goes at the next write."""

import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from apparel import artifacts


def killed_mid_write(target, directory=False):
    """Run a writer of ``target`` in a child process and SIGKILL it inside the atomic block."""
    writer = "atomic_directory" if directory else "atomic_path"
    write = "(temporary / 'part').write_text('half')" if directory else "temporary.write_text('half')"
    code = textwrap.dedent(f"""
        import os, signal
        from apparel.artifacts import {writer}
        with {writer}({str(target)!r}) as temporary:
            {write}
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    child = subprocess.run([sys.executable, "-c", code])
    assert child.returncode == -signal.SIGKILL


def test_a_killed_writers_temporary_goes_at_the_next_write(tmp_path):
    artifacts.write_json(tmp_path / "a.json", {"x": 1})
    killed_mid_write(tmp_path / "a.json")
    [first] = tmp_path.glob(".a.json.partial-*.json")
    killed_mid_write(tmp_path / "a.json")  # the second writer removed the first one's
    [second] = tmp_path.glob(".a.json.partial-*.json")
    assert second != first and artifacts.read_json(tmp_path / "a.json") == {"x": 1}
    (tmp_path / ".a.json.notes").write_text("not ours")  # only the target's own temporaries go
    artifacts.write_json(tmp_path / "ab.json", {"y": 2})
    assert second.exists()  # another target's write leaves it
    artifacts.write_json(tmp_path / "a.json", {"x": 2})
    assert sorted(path.name for path in tmp_path.iterdir()) == [".a.json.notes", "a.json", "ab.json"]
    assert artifacts.read_json(tmp_path / "a.json") == {"x": 2}


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    with artifacts.atomic_path(tmp_path / "a.json") as first:
        first.write_text('{"first": true}')
        artifacts.write_json(tmp_path / "a.json", {"second": True})  # a second writer meanwhile
        assert first.exists()
    assert artifacts.read_json(tmp_path / "a.json") == {"first": True}
    assert [path.name for path in tmp_path.iterdir()] == ["a.json"]


def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(
        "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda *paths: events.append("rename") or real_replace(*paths))
    artifacts.write_json(tmp_path / "a.json", {"x": 1})
    assert events == ["file", "rename", "folder"]


def test_a_folder_is_swapped_in_whole(tmp_path, monkeypatch):
    target = tmp_path / "saved"
    for exchange in (True, False):  # renameat2's exchange, and the two renames where it is missing
        if not exchange:
            monkeypatch.setattr(artifacts, "_exchange", lambda first, second: False)
        for version in ("one", "two"):
            with artifacts.atomic_directory(target) as temporary:
                (temporary / "version").write_text(version)
                (temporary / "variables").mkdir()
            assert (target / "version").read_text() == version
            assert sorted(path.name for path in tmp_path.iterdir()) == ["saved"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~artifacts._umask()


def test_a_killed_folder_writer_leaves_the_old_folder_and_its_temporary_goes_next_time(tmp_path):
    target = tmp_path / "saved"
    with artifacts.atomic_directory(target) as temporary:
        (temporary / "version").write_text("one")
    killed_mid_write(target, directory=True)
    assert (target / "version").read_text() == "one" and len(list(tmp_path.iterdir())) == 2
    with artifacts.atomic_directory(target) as temporary:
        (temporary / "version").write_text("two")
    assert [path.name for path in tmp_path.iterdir()] == ["saved"] and (target / "version").read_text() == "two"


@pytest.mark.parametrize("step", ["_exchange", "_sync_tree", "rmtree", "sync_directory"])
def test_a_folder_swap_stopped_at_any_step_leaves_the_old_folder_or_the_new(tmp_path, monkeypatch, step):
    target = tmp_path / "saved"
    with artifacts.atomic_directory(target) as temporary:
        (temporary / "version").write_text("one")
    owner = artifacts.shutil if step == "rmtree" else artifacts
    real = getattr(owner, step)

    def stopped(*args, **kwargs):
        if step == "_exchange":  # stopped just after the exchange: the new folder is in place
            real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(owner, step, stopped)
    with pytest.raises(KeyboardInterrupt):
        with artifacts.atomic_directory(target) as temporary:
            (temporary / "version").write_text("two")
    assert (target / "version").read_text() in ("one", "two")
