"""The write-ahead journal of accepted events, for the embedded broker (which keeps its log
in memory): what `/track` answered 200 for survives kill -9 and a power cut.

Layout, under ``<data_dir>/journal/``:

- ``<first seq, 20 digits>.wal``: append-only segments. Each record is framed as
  ``length u32 | crc32 u32 | seq u64 | body`` (little endian), where ``body`` is
  ``id_len u16 | key_len u32 | event_id | key | value`` and the CRC covers seq and body.
  A segment is closed once it passes ``segment_bytes``, and deleted once every record in
  it is confirmed.
- ``confirmed``: the highest sequence number up to which every record has been processed
  by the worker and flushed in the store (written atomically: tmp file, fsync, rename).

Writes are group-committed: appends that arrive while an fsync runs wait for the next
one together, so concurrent requests share one fsync. The writes and fsyncs run in the
journal's own thread, never on the event loop and never queued behind other work in the
loop's shared thread pool (the worker's store calls). A record is durable when
:meth:`Journal.append` returns. On open, a torn or corrupt tail (a crash in the middle
of a write) is detected by its length or CRC and cut off; everything before it is kept.

One process: the journal takes an exclusive ``flock`` on ``<dir>/.lock``.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<IIQ")  # body length, crc32(seq + body), seq
_BODY = struct.Struct("<HI")  # event id length, key length
_SEQ = struct.Struct("<Q")
_SUFFIX = ".wal"
_CONFIRMED = "confirmed"
_LOCK = ".lock"
# A record larger than this is corruption, not data (bodies are capped by the API).
_MAX_BODY = 64 * 1024 * 1024


class JournalError(Exception):
    """The journal could not be written (disk full, I/O error) or is locked."""


@dataclass(frozen=True)
class JournalRecord:
    seq: int
    event_id: str
    key: bytes
    value: bytes


def encode_record(record: JournalRecord) -> bytes:
    event_id = record.event_id.encode()
    body = _BODY.pack(len(event_id), len(record.key)) + event_id + record.key + record.value
    seq = _SEQ.pack(record.seq)
    return _HEADER.pack(len(body), zlib.crc32(seq + body), record.seq) + body


def read_records(data: bytes) -> tuple[list[JournalRecord], int]:
    """The whole records at the start of ``data`` and the byte length they take; stops at
    the first torn or corrupt record."""
    out: list[JournalRecord] = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc, seq = _HEADER.unpack_from(data, pos)
        start, end = pos + _HEADER.size, pos + _HEADER.size + length
        if length > _MAX_BODY or end > len(data) or length < _BODY.size:
            break
        body = data[start:end]
        if zlib.crc32(_SEQ.pack(seq) + body) != crc:
            break
        id_len, key_len = _BODY.unpack_from(body)
        at = _BODY.size
        event_id = body[at : at + id_len].decode()
        key = body[at + id_len : at + id_len + key_len]
        value = body[at + id_len + key_len :]
        out.append(JournalRecord(seq, event_id, bytes(key), bytes(value)))
        pos = end
    return out, pos


@dataclass
class _Segment:
    path: Path
    first_seq: int
    last_seq: int  # first_seq - 1 while empty
    size: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Append-only, fsync'd, group-committed journal of accepted events.

    Use: ``journal = Journal(path)``; ``pending = journal.open()`` (the records not yet
    confirmed, oldest first, to publish again); ``await journal.append(...)`` for each new
    event; ``journal.confirm(seq)`` once everything up to ``seq`` is stored;
    ``journal.close()``.
    """

    def __init__(self, path: Path, segment_bytes: int = 16 * 1024 * 1024, fsync: bool = True):
        self.path = Path(path)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._segments: list[_Segment] = []
        self._file: IO[bytes] | None = None
        self._lock_file: IO[str] | None = None
        self._next_seq = 1
        self._confirmed = 0
        self._queue: list[tuple[int, bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._writer: ThreadPoolExecutor | None = None  # the one thread that writes
        # _write and confirm run in worker threads; they share the segment list.
        self._thread_lock = threading.Lock()
        self.fsyncs = 0  # group commits done (for metrics and tests)
        self.appended = 0

    # -- opening ---------------------------------------------------------------------------

    def open(self) -> list[JournalRecord]:
        self.path.mkdir(parents=True, exist_ok=True)
        lock = open(self.path / _LOCK, "a+")  # noqa: SIM115 (held until close())
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise JournalError(f"journal {self.path} is in use by another process") from None
        self._lock_file = lock
        confirmed_file = self.path / _CONFIRMED
        if confirmed_file.is_file():
            text = confirmed_file.read_text().strip()
            self._confirmed = int(text) if text.isdigit() else 0
        pending: list[JournalRecord] = []
        last = self._confirmed
        for seg_path in sorted(self.path.glob(f"*{_SUFFIX}")):
            data = seg_path.read_bytes()
            records, good = read_records(data)
            if good < len(data):
                # A crash mid-write: the tail was never acknowledged. Cut it off so the
                # next record starts on a clean boundary.
                log.warning(
                    "journal %s: dropping a torn tail of %d bytes", seg_path.name, len(data) - good
                )
                with open(seg_path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            first = int(seg_path.stem) if seg_path.stem.isdigit() else 0
            seg_last = records[-1].seq if records else first - 1
            self._segments.append(_Segment(seg_path, first, seg_last, good))
            last = max(last, seg_last)
            pending.extend(r for r in records if r.seq > self._confirmed)
        self._next_seq = last + 1
        self._drop_confirmed_segments()
        return pending

    @property
    def confirmed(self) -> int:
        return self._confirmed

    @property
    def last_seq(self) -> int:
        """The highest sequence number handed out."""
        return self._next_seq - 1

    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    # -- appending -------------------------------------------------------------------------

    async def append(self, event_id: str, key: bytes, value: bytes) -> int:
        """Write one record; returns its sequence number once it is on disk."""
        seq, on_disk = self.submit(event_id, key, value)
        await on_disk
        return seq

    def submit(self, event_id: str, key: bytes, value: bytes) -> tuple[int, asyncio.Future[None]]:
        """Queue one record for the next group commit: its sequence number now, and a
        future done once it is on disk (or failed with JournalError). The caller may do
        other work meanwhile (the producer sends the event to Kafka)."""
        if self._lock_file is None:
            raise JournalError("journal is not open")
        seq = self._next_seq
        self._next_seq += 1
        frame = encode_record(JournalRecord(seq, event_id, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((seq, frame, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_queue())
        # Shielded: a client that disconnects does not cancel the write of others.
        return seq, asyncio.shield(done)

    async def _flush_queue(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="journal")
            frames = [(seq, frame) for seq, frame, _ in batch]
            try:
                await asyncio.get_running_loop().run_in_executor(self._writer, self._write, frames)
            except Exception as exc:
                error = JournalError(f"journal write failed: {exc}")
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(error)
                continue
            for _, _, done in batch:
                if not done.done():
                    done.set_result(None)

    def _write(self, frames: list[tuple[int, bytes]]) -> None:
        with self._thread_lock:
            self._write_locked(frames)

    def _write_locked(self, frames: list[tuple[int, bytes]]) -> None:
        for seq, frame in frames:
            if self._file is None or self._segments[-1].size >= self.segment_bytes:
                self._roll(seq)
            assert self._file is not None
            self._file.write(frame)
            segment = self._segments[-1]
            segment.size += len(frame)
            segment.last_seq = seq
        assert self._file is not None
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self.fsyncs += 1
        self.appended += len(frames)

    def _roll(self, first_seq: int) -> None:
        if self._file is not None:
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
            self._file.close()
        path = self.path / f"{first_seq:020d}{_SUFFIX}"
        self._file = open(path, "ab")  # noqa: SIM115 (closed on roll or close())
        self._segments.append(_Segment(path, first_seq, first_seq - 1, 0))
        if self.fsync:
            _fsync_dir(self.path)  # the new file's name is durable too

    # -- confirming ------------------------------------------------------------------------

    def confirm(self, seq: int) -> None:
        """Everything up to ``seq`` is stored downstream: it is not replayed again, and
        segments holding nothing newer are deleted. Blocking (fsync): call in a thread."""
        with self._thread_lock:
            self._confirm_locked(seq)

    def _confirm_locked(self, seq: int) -> None:
        seq = min(seq, self.last_seq)
        if seq <= self._confirmed:
            return
        tmp = self.path / f"{_CONFIRMED}.tmp"
        with open(tmp, "w") as f:
            f.write(str(seq))
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, self.path / _CONFIRMED)
        if self.fsync:
            _fsync_dir(self.path)
        self._confirmed = seq
        self._drop_confirmed_segments()

    def _drop_confirmed_segments(self) -> None:
        # Never the segment being written: it is the one new records go to.
        while len(self._segments) > 1 and self._segments[0].last_seq <= self._confirmed:
            self._segments.pop(0).path.unlink(missing_ok=True)
        if self._segments and self._file is None and self._segments[0].last_seq <= self._confirmed:
            # After a restart, a fully confirmed last segment is not reopened for appends.
            self._segments.pop(0).path.unlink(missing_ok=True)

    def unconfirmed(self, below: int) -> list[JournalRecord]:
        """The records after the confirmed point and before sequence number ``below``, in
        order: what a broker recycle writes again (``broker_recycle.py``). Reads the
        segments under the writer's lock: call in a thread."""
        with self._thread_lock:
            out: list[JournalRecord] = []
            for segment in self._segments:
                if segment.last_seq <= self._confirmed or segment.first_seq >= below:
                    continue
                records = read_records(segment.path.read_bytes())[0]
                out.extend(r for r in records if self._confirmed < r.seq < below)
            return out

    def records(self) -> Iterator[JournalRecord]:
        """Every record still in the journal (for tests and tools)."""
        for segment in self._segments:
            yield from read_records(segment.path.read_bytes())[0]

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._file is not None:
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
