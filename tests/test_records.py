"""Typed records: one key builder, expiry set on save, no write-back to forget."""

from __future__ import annotations

from events.records import Indexed, Records, parse, record_key
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


def test_an_index_read_back_in_any_order_finds_what_the_saved_one_finds() -> None:
    """``find`` answers from memory; rebuilt from the stored records (a restart, another worker
    taking the partition, a store that iterates in key order) it finds the same records, also
    for crowded terms, which keep only the records that live longest, and also after expiry
    (records of an indexed kind are saved once and expire in ``until`` order)."""
    import random

    def terms(ids: list[str], record: dict) -> list[str]:
        return [f"{ids[0]}:{t}" for t in record["t"]]

    spec = {"doc": Indexed(terms, keep=5)}
    rng = random.Random(4)
    table = TableLike()
    live = Records(table, lambda *_: None, spec)
    everything: dict[str, list] = {}
    for i in range(400):
        ids = ("weibo" if i % 3 else "douyin", f"d{i}")
        until = float(rng.randrange(1000))
        live.save("doc", *ids, record={"t": rng.sample("abcdefgh", 3)}, until=until)
        for term in table[record_key("doc", *ids)]["t"]:
            everything.setdefault(f"{ids[0]}:{term}", []).append((until, record_key("doc", *ids)))
    for now in (-1.0, 300.0, 700.0, 990.0):
        for key in [k for k in table.data if table[k]["until"] <= now]:  # expiry, in until order
            del table.data[key]
            live.forget(key)
        keys = list(table.data)
        rng.shuffle(keys)
        rebuilt = Records(table, lambda *_: None, spec)
        for key in keys:
            rebuilt.restore(key, table[key])
        for term, entries in everything.items():
            got = live.find("doc", term)
            assert rebuilt.find("doc", term) == got
            alive = sorted(e for e in entries if e[0] > now)
            assert sorted(record_key("doc", *ids) for ids, _ in got) == sorted(k for _u, k in alive[-5:])
    crowded = live.find("doc", "weibo:a")
    assert 0 < len(crowded) <= 5 and all(ids[0] == "weibo" for ids, _rec in crowded)
    for ids, _rec in crowded:  # a record gone is out of the index
        live.forget(record_key("doc", *ids))
    assert live.find("doc", "weibo:a") == []
