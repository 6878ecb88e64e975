from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage.spool import LOCK_NAME, Spool

REPO = Path(__file__).resolve().parents[2]


def test_records_come_back_in_append_order(tmp_path: Path) -> None:
    """pending() lists every appended record, oldest first, with its size."""
    spool = Spool(str(tmp_path / "s"))
    written = [f"event {i}".encode() * (i + 1) for i in range(50)]
    for data in written:
        spool.append(data)
    entries = spool.pending()
    assert [spool.read(e) for e in entries] == written
    assert [e.size for e in entries] == [len(d) for d in written]


def test_removed_records_are_not_pending(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s"))
    first, second, third = (spool.append(b) for b in (b"1", b"2", b"3"))
    spool.remove(second)
    spool.remove(second)  # removing twice is harmless (a redelivery after a crash)
    assert spool.pending() == [first, third]
    assert spool.read(second) is None


def test_an_empty_or_missing_spool_has_nothing_pending(tmp_path: Path) -> None:
    assert Spool(str(tmp_path / "never-created")).pending() == []
    assert Spool(str(tmp_path / "never-created")).sweep(0) == 0


def test_torn_temporary_files_are_ignored_and_swept(tmp_path: Path) -> None:
    """A writer killed before its rename leaves a partial temp file: never listed, swept once old."""
    spool = Spool(str(tmp_path / "s"))
    kept = spool.append(b'{"id": "whole"}')
    torn = tmp_path / "s" / f".{'9' * 20}-1-0-100.event.tmp"
    torn.write_bytes(b'{"id": "to')
    stray = tmp_path / "s" / "notes.txt"
    stray.write_bytes(b"not a record")
    assert spool.pending() == [kept]
    assert spool.sweep(older_than=3600) == 0  # fresh: its writer may still be alive
    old = time.time() - 7200
    os.utime(torn, (old, old))
    assert spool.sweep(older_than=3600) == 1
    assert not torn.exists() and stray.exists()
    assert spool.pending() == [kept]


def test_names_are_unique_and_ordered_across_spools_and_processes(tmp_path: Path) -> None:
    """Two writers on one directory never make the same name, and the order is the order of appends."""
    directory = str(tmp_path / "s")
    a, b = Spool(directory), Spool(directory)
    for i in range(100):
        (a if i % 2 else b).append(str(i).encode())
    script = f"from storage.spool import Spool; Spool({directory!r}).append(b'child')"
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO)
    a.append(b"last")
    contents = [a.read(e) for e in a.pending()]
    assert contents == [str(i).encode() for i in range(100)] + [b"child", b"last"]
    assert len({e.name for e in a.pending()}) == 102


def test_a_writer_killed_mid_stream_leaves_only_whole_records(tmp_path: Path) -> None:
    """SIGKILL during appends: every listed record is complete; at most the torn one is missing."""
    directory = str(tmp_path / "s")
    script = (
        "import sys\nfrom storage.spool import Spool\ns = Spool(sys.argv[1])\nprint('ready', flush=True)\n"
        "i = 0\nwhile True:\n    s.append((str(i) + ':' + 'x' * 5000).encode()); i += 1\n"
    )
    spool = Spool(directory)
    with subprocess.Popen([sys.executable, "-c", script, directory], cwd=REPO, stdout=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 30
        while len(spool.pending()) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    records = [spool.read(e) for e in spool.pending()]
    assert len(records) >= 20
    for i, data in enumerate(records):
        assert data == (str(i) + ":" + "x" * 5000).encode()


def test_one_leader_at_a_time_and_the_next_takes_over(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s"))
    leader = spool.try_lead()
    assert leader is not None
    assert Spool(str(tmp_path / "s")).try_lead() is None  # another open file, even in this process
    assert (tmp_path / "s" / LOCK_NAME).exists()
    assert spool.pending() == []  # the lock file is not a record
    leader.release()
    successor = spool.try_lead()
    assert successor is not None
    successor.release()


def test_a_dead_leaders_lock_is_free(tmp_path: Path) -> None:
    """The kernel releases the flock of a process killed with SIGKILL."""
    directory = str(tmp_path / "s")
    script = (
        "import sys, time\nfrom storage.spool import Spool\nassert Spool(sys.argv[1]).try_lead()\n"
        "print('leading', flush=True)\ntime.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script, directory], cwd=REPO, stdout=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stdout.readline() == b"leading\n"
        assert Spool(directory).try_lead() is None
        child.send_signal(signal.SIGKILL)
    lock = Spool(directory).try_lead()
    assert lock is not None
    lock.release()
