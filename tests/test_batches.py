"""Stage records carry many events in one Kafka message (issue 15): the framing gives back
exactly what went in, whatever the bytes, and a broken record is refused with where it broke."""

from __future__ import annotations

import asyncio
import random

import pytest

from streams.kafka import batches
from streams.kafka.batches import Outbox, pack, unpack


def test_entries_come_back_as_they_went_in_whatever_the_bytes() -> None:
    rng = random.Random(15)
    for _ in range(200):
        entries = [(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 12))).hex().encode(),
                    bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))))
                   for _ in range(rng.randrange(0, 20))]
        assert unpack(pack(entries)) == [(k.decode() or None, v) for k, v in entries]


def test_keys_with_tabs_markup_and_newlines_survive() -> None:
    entries = [("weibo\t<b>x</b>\n".encode(), b'{"type":"post"}\n{"x":1}'), (b"", b'{"type":"tick"}')]
    assert unpack(pack(entries)) == [("weibo\t<b>x</b>\n", b'{"type":"post"}\n{"x":1}'), (None, b'{"type":"tick"}')]


@pytest.mark.parametrize("cut", [1, 5, 9, 12])
def test_a_truncated_record_is_refused_with_the_byte_where_it_broke(cut: int) -> None:
    record = pack([(b"k", b"0123456789")])
    with pytest.raises(ValueError, match="stage record: .*byte"):
        unpack(record[:-cut])


class _Topic:
    def __init__(self) -> None:
        self.sent: list[tuple[int, dict, bytes]] = []

    async def send(self, *, value: bytes, partition: int, headers: dict) -> None:
        self.sent.append((partition, headers, value))


def test_outbox_sends_one_record_per_stage_partition_and_source_in_order(monkeypatch) -> None:
    monkeypatch.setattr(batches, "RECORD_BYTES", 100)
    topics = {"platform": _Topic(), "targets": _Topic()}
    box = Outbox()
    for i in range(10):
        box.add("platform", 1, "posts/0", b"weibo", b"x" * 30 + str(i).encode())
    box.add("platform", 1, "posts/1", b"weibo", b"other source")
    box.add("targets", 0, "posts/0", None, b"tick")
    assert len(box) == 12
    records = asyncio.run(box.send(topics, "stormwatch-source"))
    assert len(box) == 0
    platform = topics["platform"].sent
    from_first = [v for p, h, rec in platform if h["stormwatch-source"] == b"posts/0" for _k, v in unpack(rec)]
    assert from_first == [b"x" * 30 + str(i).encode() for i in range(10)]  # in order, nothing lost
    assert all(len(rec) <= 100 for _p, _h, rec in platform)  # cut at the record size
    assert {p for p, _h, _rec in platform} == {1}
    assert all(h["stormwatch-batch"] == b"1" for _p, h, _rec in platform)
    assert topics["targets"].sent == [(0, {"stormwatch-source": b"posts/0", "stormwatch-batch": b"1"},
                                       pack([(b"", b"tick")]))]
    assert records == len(platform) + 1 and len(platform) > 2


def test_a_stage_record_is_read_as_its_entries_or_as_the_one_event_of_older_records() -> None:
    from types import SimpleNamespace

    from streams.kafka.stage import record_entries

    batched = SimpleNamespace(value=pack([(b"k1", b"a"), (b"", b"b")]), headers=[("stormwatch-batch", b"1")])
    older = SimpleNamespace(value=b'{"type":"tick"}', headers=[])
    assert record_entries(batched, "unused") == [("k1", b"a"), (None, b"b")]
    assert record_entries(older, "weibo") == [("weibo", b'{"type":"tick"}')]
    with pytest.raises(ValueError, match="stage record"):
        record_entries(SimpleNamespace(value=batched.value[:-1], headers=batched.headers), None)
