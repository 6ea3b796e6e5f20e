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


def test_an_event_bound_for_several_keys_is_written_once_and_read_back_as_one_object() -> None:
    event = b'{"type":"co_action","partners":[' + b"1" * 500 + b"]}"
    entries = [(b"weibo\ta\tb", event), (b"weibo\ta\tc", event), (b"weibo\ta\td", bytes(event)),
               (b"", b"tick"), (b"weibo\tx", event)]
    record = pack(entries)
    assert len(record) < 2 * len(event) + 100  # twice: once at first, once after the tick between
    got = unpack(record)
    assert got == [(k.decode() or None, v) for k, v in entries]
    assert got[0][1] is got[1][1] is got[2][1] and got[4][1] is not got[0][1]  # the reader decodes it once


def test_a_record_that_opens_with_a_repeat_is_refused() -> None:
    record = batches._LENGTHS.pack(1, batches.REPEAT) + b"k"
    with pytest.raises(ValueError, match="stage record: entry at byte 8 repeats .* none came before"):
        unpack(record)


def test_a_cut_record_starts_with_its_event_even_inside_a_run_of_repeats(monkeypatch) -> None:
    monkeypatch.setattr(batches, "RECORD_BYTES", 120)
    topics = {"army_pairs": _Topic()}
    box = Outbox()
    event = b"e" * 60
    for i in range(30):
        box.add("army_pairs", 0, "stage:army_objects/0", f"pair-{i:02}".encode(), event)
    asyncio.run(box.send(topics, "stormwatch-source"))
    sent = topics["army_pairs"].sent
    assert len(sent) > 1 and all(len(rec) <= 120 for _p, _h, rec in sent)
    got = [entry for _p, _h, rec in sent for entry in unpack(rec)]
    assert got == [(f"pair-{i:02}", event) for i in range(30)]


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
