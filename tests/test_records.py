"""Typed records: one key builder, expiry set on save, no write-back to forget."""

from __future__ import annotations

from events.records import Records, parse, record_key
from tests.test_engine import TableLike


def test_keys_are_built_and_read_back_in_one_place_whatever_the_ids_hold() -> None:
    for kind, ids in [("pair", ["weibo", "a\tb", "c"]), ("pair", ["weibo", "a", "b\tc"]), ("order", ["w\\", "t"])]:
        assert parse(record_key(kind, *ids)) == (kind, ids)
    assert record_key("pair", "weibo", "a\tb", "c") != record_key("pair", "weibo", "a", "b\tc")
    assert record_key("order", "weibo\to", "x") != record_key("order", "weibo", "o\tx")


def test_save_writes_back_and_schedules_expiry_once_for_a_new_record() -> None:
    scheduled: list[tuple[str, float]] = []
    table = TableLike()  # values go through JSON, as in a Faust table
    records = Records(table, lambda key, until: scheduled.append((key, until)))
    records.save("item", "weibo", "p1", record={"n": 1}, until=100.0)
    rec = records.get("item", "weibo", "p1")
    rec["n"] += 1
    records.save("item", "weibo", "p1", record=rec, until=200.0)  # later: the engine re-checks, no new entry
    assert records.get("item", "weibo", "p1") == {"n": 2, "until": 200.0}
    assert scheduled == [(record_key("item", "weibo", "p1"), 100.0)]
    rec = records.get("item", "weibo", "p1")
    records.save("item", "weibo", "p1", record=rec, until=50.0)  # earlier: scheduled again
    assert scheduled[-1] == (record_key("item", "weibo", "p1"), 50.0)


def test_an_edit_is_written_back_even_to_a_table_that_copies_values() -> None:
    table = TableLike()
    records = Records(table, lambda *_: None)
    with records.edit("target", "x", until=10.0, new=lambda: {"hits": 0}) as rec:
        rec["hits"] += 1
    with records.edit("target", "x", until=20.0, new=lambda: {"hits": 0}) as rec:
        rec["hits"] += 1
    assert records.get("target", "x") == {"hits": 2, "until": 20.0}
    assert [ids for ids, _ in records.of_kind("target")] == [["x"]]
