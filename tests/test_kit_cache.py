"""demohub.kit.cache: a runtime's folder for what it derives from a model folder."""

from __future__ import annotations

import os
import time

import pytest

from demohub.kit import cache


def test_the_folder_follows_the_hubs_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV, str(tmp_path))
    assert cache.folder("durian") == tmp_path / "derived" / "durian"
    monkeypatch.delenv(cache.ENV)
    assert cache.folder("durian") is None


def test_keys_change_with_any_part_and_with_where_parts_split():
    assert cache.key("a", b"b") == cache.key("a", b"b")
    assert cache.key("a", "b") != cache.key("a", "c")
    assert cache.key("ab", "c") != cache.key("a", "bc")


def test_file_identity_changes_when_the_file_is_replaced(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"x" * 10)
    before = cache.file_identity(path)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 5_000_000))
    assert cache.file_identity(path) != before


def test_an_entry_appears_whole_or_not_at_all(tmp_path):
    def write(folder):
        (folder / "part").write_text("1")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cache.store(tmp_path, "entry", write)
    assert list(tmp_path.iterdir()) == []

    stored = cache.store(tmp_path, "entry", lambda folder: (folder / "part").write_text("2"))
    assert stored == tmp_path / "entry" and (stored / "part").read_text() == "2"
    # a second worker of the same model that finishes later keeps the first one's entry
    assert cache.store(tmp_path, "entry", lambda folder: (folder / "part").write_text("3")) is None
    assert (stored / "part").read_text() == "2" and [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_only_the_newest_entries_are_kept_and_dead_writers_are_swept(tmp_path):
    old = time.time() - 2 * cache.STALE_S
    for n in range(5):
        entry = tmp_path / f"old-{n}"
        entry.mkdir()
        os.utime(entry, (old + n, old + n))
    stale = tmp_path / ".tmp-dead-writer"
    stale.mkdir()
    os.utime(stale, (old, old))
    fresh = tmp_path / ".tmp-live-writer"
    fresh.mkdir()

    cache.store(tmp_path, "new", lambda folder: None)
    # KEEP entries: the new one and the two newest before it; the live writer's folder stays
    assert cache.KEEP == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-live-writer", "new", "old-3", "old-4"]
