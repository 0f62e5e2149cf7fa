from __future__ import annotations

from concurrent.futures import Future
import errno
import json
from pathlib import Path
import threading

import pytest
from routerd.daemon.loop import EngineLoop
from routerd.daemon.persistence import PersistenceHealth
from routerd.daemon.statefile import StateFile
from routerd.testing.tmpfs import fill
from routerd.testing.tmpfs import require_mount_prereqs
from routerd.testing.tmpfs import small_tmpfs


def test_state_roundtrip_and_atomic(tmp_path: Path) -> None:
    sf = StateFile(tmp_path / "x" / "state.json")
    assert sf.load() is None
    sf.save({"lease": {"address": "192.0.2.10"}})
    assert sf.load() == {"lease": {"address": "192.0.2.10"}}
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["state.json"], "no temp files left"


@pytest.mark.parametrize("content", [b"", b'{"half": ', b"[1, 2]", b"\xff\xfe", b"null"])
def test_torn_state_is_moved_aside(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    sf = StateFile(path)
    assert sf.load() is None
    assert sf.corrupt_files == 1 and sf.last_error
    assert (tmp_path / "state.json.corrupt").read_bytes() == content
    sf.save({"ok": True})
    assert json.loads(path.read_text()) == {"ok": True}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_timers_fire_in_order_and_cancel() -> None:
    clock = Clock()
    loop = EngineLoop(clock=clock)
    fired: list[str] = []
    loop.call_at(105, fired.append, "b")
    loop.call_at(101, fired.append, "a")
    handle = loop.call_at(103, fired.append, "cancelled")
    handle.cancel()
    clock.t = 104
    loop.run_once()
    assert fired == ["a"]
    clock.t = 106
    loop.run_once()
    assert fired == ["a", "b"]
    loop.close()


def test_callback_errors_are_counted_not_fatal() -> None:
    loop = EngineLoop()

    def boom() -> None:
        raise RuntimeError("engine bug")

    loop.call_soon_threadsafe(boom)
    loop.run_once()
    assert loop.callback_errors == 1 and "engine bug" in (loop.last_error or "")
    loop.close()


def test_submit_from_other_thread_and_worker_results() -> None:
    loop = EngineLoop()
    loop.start_thread()
    ident: Future[int] = loop.submit(threading.get_ident)
    assert ident.result(5) != threading.get_ident()
    done: Future[int] = Future()
    loop.run_in_worker(
        lambda: 21 * 2,
        on_done=lambda f: done.set_result(f.result() if loop.in_loop_thread() else -1),
    )
    assert done.result(5) == 42, "on_done runs on the loop thread"
    loop.stop()
    assert loop.join(5)
    loop.close()


def test_a_refused_save_is_kept_reported_and_retried(tmp_path: Path) -> None:
    health = PersistenceHealth()
    path = tmp_path / "state.json"
    path.mkdir()  # in the way: os.replace fails
    (path / "x").write_text("")
    sf = StateFile(path, health=health)
    with pytest.raises(OSError):
        sf.save({"n": 1})
    with pytest.raises(OSError):
        sf.save({"n": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"], "no temp file left"
    assert sf.unsaved and health.degraded and sf.failed_saves == 2
    assert "state.json" in health.faults()[0].path
    assert sf.retry() is False, "still in the way"
    (path / "x").unlink()
    path.rmdir()
    assert sf.retry() is True
    assert json.loads(path.read_text()) == {"n": 2}, "the newest unsaved data"
    assert not sf.unsaved and not health.degraded


def test_clear_drops_unsaved_state(tmp_path: Path) -> None:
    health = PersistenceHealth()
    path = tmp_path / "state.json"
    path.mkdir()
    sf = StateFile(path, health=health)
    with pytest.raises(OSError):
        sf.save({"n": 1})
    path.rmdir()
    sf.clear()
    assert sf.retry() is True and not path.exists(), "a cleared state is not resurrected"
    assert not health.degraded


def test_state_file_on_a_full_tmpfs(tmp_path: Path) -> None:
    require_mount_prereqs()
    health = PersistenceHealth()
    with small_tmpfs(tmp_path / "fs", "64k") as fs:
        sf = StateFile(fs / "state.json", health=health)
        sf.save({"n": 0})
        filler = fill(fs)
        with pytest.raises(OSError) as info:
            sf.save({"n": 1, "pad": "x" * 8192})
        assert info.value.errno == errno.ENOSPC
        assert sorted(p.name for p in fs.iterdir()) == [".filler", "state.json"], (
            "the temporary file is removed: it would hold the space the retry needs"
        )
        assert health.faults()[0].reason == "NoSpace"
        assert sf.load() == {"n": 0}, "the old state is intact"
        filler.unlink()
        assert sf.retry() is True
        assert sf.load() == {"n": 1, "pad": "x" * 8192}
