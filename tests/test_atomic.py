"""Atomic writes committed together (`atomic.together`): the files of a block appear when it ends, whole,
whatever ends it; a write that fails is one `WriteFailed` at once and leaves nothing half-written, on a real
full disk too."""

from __future__ import annotations

import contextvars
import errno
from concurrent.futures import ThreadPoolExecutor

import pytest

from digitlab.atomic import WriteFailed, _syncfs, temporary_path, together, write_atomically, write_bytes

pytestmark = pytest.mark.skipif(_syncfs() is None, reason="no syncfs here: each file is flushed alone")


def test_files_written_together_appear_when_the_block_ends(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"old")
    with together():
        write_bytes(tmp_path / "a" / "a.txt", b"a")
        write_bytes(tmp_path / "b.txt", b"new")
        assert not (tmp_path / "a" / "a.txt").exists()
        assert (tmp_path / "b.txt").read_bytes() == b"old"  # the previous file until the block ends
    assert (tmp_path / "a" / "a.txt").read_bytes() == b"a"
    assert (tmp_path / "b.txt").read_bytes() == b"new"
    assert not list(tmp_path.rglob("*.partial"))


def test_a_helper_thread_given_the_context_writes_into_the_block(tmp_path):
    with together(), ThreadPoolExecutor(1) as helper:
        helper.submit(contextvars.copy_context().run, write_bytes, tmp_path / "t.txt", b"t").result()
        assert not (tmp_path / "t.txt").exists()
    assert (tmp_path / "t.txt").read_bytes() == b"t"


def test_a_failed_write_raises_at_once_and_the_whole_files_still_land(tmp_path):
    def no_space(file):
        file.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    refused = pytest.raises(WriteFailed, match=r"could not write .*bad\.txt: No space left on device")
    with refused, together():
        write_bytes(tmp_path / "good.txt", b"whole")
        write_atomically(tmp_path / "bad.txt", no_space)
    assert (tmp_path / "good.txt").read_bytes() == b"whole"
    assert not (tmp_path / "bad.txt").exists()
    assert not list(tmp_path.rglob("*.partial"))


def test_an_error_in_the_block_is_the_one_raised(tmp_path):
    with pytest.raises(KeyError), together():
        write_bytes(tmp_path / "kept.txt", b"kept")
        raise KeyError("the block's own")
    assert (tmp_path / "kept.txt").read_bytes() == b"kept"


def test_a_full_disk_inside_a_block(small_disk):
    """A real 600 KiB tmpfs filled inside the block: the write that does not fit fails by name, the ones
    before it land whole, and nothing half-written is left."""
    full = pytest.raises(WriteFailed, match=r"could not write .*f5\.bin: No space left on device \(ENOSPC\)")
    with full, together():
        for i in range(10):
            write_bytes(small_disk / f"f{i}.bin", bytes(110_000))
    assert sorted(p.name for p in small_disk.iterdir()) == [f"f{i}.bin" for i in range(5)]
    assert all(p.stat().st_size == 110_000 for p in small_disk.iterdir())


def test_a_killed_writers_leftovers_are_removed_by_the_folders_next_holder(tmp_path):
    """Temporary files left by killed writers in a run's folders go when a process takes the run folder's
    hold (`run_lock.hold`); files that are not temporary, and anything in a folder digitlab does not write
    (the run may have been given a folder with other things in it), stay."""
    from digitlab.run_lock import holding

    run = tmp_path / "run"
    left = [
        temporary_path(run / "checkpoints" / "last.ckpt", "123"),
        run / "pictures" / ".a.png.x1y2.partial",
    ]
    left.append(run / ".metrics.json.abc.partial")
    kept = [run / "metrics.json", run / "pictures" / "partial.png", run / "other" / ".b.png.z.partial"]
    for path in [*left, *kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    with holding(run):
        assert not any(path.exists() for path in left)
        assert all(path.exists() for path in kept)
