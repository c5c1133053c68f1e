"""The journal keeps what it acknowledged: group commit, a torn tail cut off on open,
confirmed records never replayed, confirmed segments deleted."""

from __future__ import annotations

import asyncio

import pytest

from turret_stream.journal import Journal, JournalError


async def test_concurrent_appends_share_fsyncs_and_survive_a_reopen(tmp_path):
    journal = Journal(tmp_path / "j")
    assert journal.open() == []
    seqs = await asyncio.gather(
        *(journal.append(f"evt_{i}", b"k", f"value {i}".encode()) for i in range(200))
    )
    assert sorted(seqs) == list(range(1, 201))
    assert journal.fsyncs < 200  # group commit: many appends per fsync
    await journal.close()

    again = Journal(tmp_path / "j")
    pending = again.open()
    assert [r.event_id for r in pending] == [f"evt_{i}" for i in range(200)]
    assert pending[7].value == b"value 7" and pending[7].key == b"k"
    assert await again.append("evt_next", b"k", b"v") == 201
    await again.close()


async def test_a_torn_tail_is_dropped_and_the_rest_kept(tmp_path):
    journal = Journal(tmp_path / "j")
    journal.open()
    for i in range(3):
        await journal.append(f"evt_{i}", b"key", b"x" * 100)
    await journal.close()
    [segment] = (tmp_path / "j").glob("*.wal")
    data = segment.read_bytes()
    segment.write_bytes(data[:-10])  # a crash in the middle of the third record's write

    again = Journal(tmp_path / "j")
    assert [r.event_id for r in again.open()] == ["evt_0", "evt_1"]
    await again.append("evt_3", b"key", b"y")  # lands on a clean boundary
    await again.close()
    third = Journal(tmp_path / "j")
    assert [r.event_id for r in third.open()] == ["evt_0", "evt_1", "evt_3"]
    await third.close()


async def test_confirmed_records_are_not_replayed_and_their_segments_go(tmp_path):
    journal = Journal(tmp_path / "j", segment_bytes=4096)
    journal.open()
    for i in range(100):
        await journal.append(f"evt_{i}", b"k", b"z" * 200)
    segments = len(list((tmp_path / "j").glob("*.wal")))
    assert segments > 3
    await asyncio.to_thread(journal.confirm, 80)
    assert len(list((tmp_path / "j").glob("*.wal"))) < segments
    with pytest.raises(JournalError, match="in use"):
        Journal(tmp_path / "j").open()  # one process at a time
    await journal.close()

    again = Journal(tmp_path / "j", segment_bytes=4096)
    # seq n holds evt_{n-1}: everything after seq 80 comes back
    assert [r.event_id for r in again.open()] == [f"evt_{i}" for i in range(80, 100)]
    await again.close()


async def test_unconfirmed_lists_the_records_between_the_confirmed_point_and_a_bound(tmp_path):
    # Small segments: the records span several, and the confirmed ones are deleted.
    journal = Journal(tmp_path / "j", segment_bytes=4096)
    journal.open()
    for i in range(60):
        await journal.append(f"evt_{i}", b"k", b"x" * 200)
    journal.confirm(25)
    got = journal.unconfirmed(below=41)
    assert [r.seq for r in got] == list(range(26, 41))
    assert got[0].event_id == "evt_25" and got[0].value == b"x" * 200
    assert journal.unconfirmed(below=26) == []
    await journal.close()
