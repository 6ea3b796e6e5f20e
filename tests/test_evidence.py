"""Evidence for prosecutors: Merkle proofs, bundles that verify offline, tampering named,
determinism, a reader that uses the manifest alone, and the platforms' preservation duty."""

from __future__ import annotations

import base64
import hashlib
import io
import math
import zipfile
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence.bundle import export, verify
from evidence.log import PlatformLogs
from evidence.merkle import MerkleTree, leaf_hash, node_hash, verify_consistency, verify_inclusion
from evidence.recorder import EvidenceSettings, new_recorder
from commands.cli import main
from streams.local import LocalPipeline
from streams.settings import Settings
from commands.simulator import SimConfig, simulate_lines
from tests.support.events import action, order, post, tick

KEY = base64.b64encode(bytes(range(32))).decode()  # a fixed signing key: the same stream, the same bytes
SIM = SimConfig(minutes=20, organic_per_s=4)
SIM_KINDS = {"water_army_campaign", "viral_spread", "legal_threshold", "violence_surge", "illegal_marketing",
             "order_overdue", "order_refused", "continued_dissemination"}


# -- Merkle trees against the RFC's definitions, computed naively ---------------------------------

def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_root(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return leaf_hash(d[0])
    k = _k(len(d))
    return node_hash(naive_root(d[:k]), naive_root(d[k:]))


def naive_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return naive_path(m, d[:k]) + [naive_root(d[k:])]
    return naive_path(m - k, d[k:]) + [naive_root(d[:k])]


def naive_proof(m: int, d: list[bytes], complete: bool = True) -> list[bytes]:
    if m == len(d):
        return [] if complete else [naive_root(d)]
    k = _k(len(d))
    if m <= k:
        return naive_proof(m, d[:k], complete) + [naive_root(d[k:])]
    return naive_proof(m - k, d[k:], False) + [naive_root(d[:k])]


def test_merkle_roots_and_proofs_equal_the_rfc_definitions_for_every_small_tree() -> None:
    data = [f"entry {i}".encode() for i in range(64)]
    tree = MerkleTree()
    assert tree.root() == hashlib.sha256(b"").digest()
    for n in range(1, 65):
        tree.append(data[n - 1])
        d = data[:n]
        root = naive_root(d)
        assert tree.root() == root
        for m in range(n):
            path = tree.inclusion_proof(m)
            assert path == naive_path(m, d)
            assert verify_inclusion(m, n, leaf_hash(d[m]), path, root)
            assert not verify_inclusion(m, n, leaf_hash(b"other"), path, root)
            if n > 1:
                assert not verify_inclusion((m + 1) % n, n, leaf_hash(d[m]), path, root)
            if path:
                assert not verify_inclusion(m, n, leaf_hash(d[m]), path[:-1], root)
        for m in range(1, n + 1):
            proof = tree.consistency_proof(m, n)
            assert proof == naive_proof(m, d)
            assert verify_consistency(m, n, naive_root(data[:m]), root, proof)
            if m < n:
                assert not verify_consistency(m, n, naive_root(data[:m]), naive_root(data[:n - 1] + [b"x"]), proof)
                assert not verify_consistency(m, n, leaf_hash(b"x"), root, proof)
    # An older tree's proofs, asked of a grown tree, are still those of the older tree.
    assert tree.inclusion_proof(3, 17) == naive_path(3, data[:17])
    assert tree.consistency_proof(5, 17) == naive_proof(5, data[:17])


# -- the simulator's stream, with the recorder ---------------------------------------------------

def _replay(lines: list[bytes], directory: Path | None, settings: EvidenceSettings | None = None):
    recorder, _ = new_recorder(directory, KEY, settings)
    alerts: list = []
    pipeline = LocalPipeline(Settings(), alerts.append, lambda _l: None, recorder)
    for n, line in enumerate(lines, 1):
        pipeline.feed(line, f"sim:{n}")
    recorder.logs.close()
    return recorder.logs, alerts


@pytest.fixture(scope="module")
def sim_lines() -> list[bytes]:
    return list(simulate_lines(SIM))


@pytest.fixture(scope="module")
def sim_log(sim_lines, tmp_path_factory):
    directory = tmp_path_factory.mktemp("evidence") / "log"
    log, alerts = _replay(sim_lines, directory)
    return directory, log, alerts


def _latest_of_each_kind(alerts) -> dict[str, str]:
    return {a.kind: a.alert_id for a in alerts}


def test_every_alert_kind_of_the_simulator_exports_a_bundle_that_verifies(sim_log) -> None:
    directory, _log, alerts = sim_log
    assert SIM_KINDS <= {a.kind for a in alerts}
    on_disk = PlatformLogs.open(directory)  # export reads the folder, as `stormwatch evidence export` does
    public_key = (directory / "public-key").read_text().strip()
    for alert_id in dict.fromkeys(a.alert_id for a in alerts):
        bundle = export(on_disk, alert_id)
        failures, facts = verify(bundle, public_key)
        assert failures == [], (alert_id, failures)
        manifest = orjson.loads(zipfile.ZipFile(io.BytesIO(bundle)).read("manifest.json"))
        versions = [a for a in alerts if a.alert_id == alert_id]
        assert [v["version"] for v in manifest["alert_versions"]] == [v.version for v in versions]
        assert facts["versions"] == len(versions)
        roles = {orjson.loads(e["leaf"])["role"] for e in manifest["entries"]}
        assert len(roles) > 1, f"{alert_id} cites no event"  # every alert cites at least one raw event


def test_what_each_kind_cites(sim_log) -> None:
    _directory, logs, alerts = sim_log
    log = logs.logs["weibo"]
    latest = _latest_of_each_kind(alerts)

    def cited(alert_id: str) -> list[dict]:
        return [orjson.loads(log.leaves[i]) for i in log.by_alert[alert_id]]

    threshold = [a for a in alerts if a.kind == "legal_threshold" and a.subject.type == "post"][0]
    entries = cited(threshold.alert_id)
    crossing = [e for e in entries if e["role"] == "crossing event"]
    assert len(crossing) == 1 and crossing[0]["ts"] == threshold.ts  # the event that crossed the figure
    assert any(e["role"] == "post" and e["event_id"] for e in entries)
    assert all(e["ts"] <= threshold.ts for e in entries if e["ts"] and e["role"] != "alert version")
    assert len(entries) <= EvidenceSettings().max_entries_per_version + 1
    rumour = next(e for e in entries if e["role"] == "post")
    assert "收受贿赂" in orjson.loads(base64.b64decode(rumour["raw"]))["text"]  # the content, as received
    campaign = cited(latest["water_army_campaign"])
    assert sum(e["role"] == "campaign member post" for e in campaign) >= 5
    overdue = cited(latest["order_overdue"])
    assert {"order", "alert version"} <= {e["role"] for e in overdue}
    spread = cited(latest["continued_dissemination"])
    assert any(e["role"].endswith("after deadline") for e in spread)
    assert any(e["role"] == "action" for e in spread)


def test_the_cli_writes_exports_and_verifies(sim_lines, tmp_path: Path) -> None:
    src = tmp_path / "sim.jsonl"
    src.write_bytes(b"".join(line + b"\n" for line in sim_lines))
    runner = CliRunner()
    env = {"STORMWATCH_EVIDENCE_SIGNING_KEY": KEY}
    result = runner.invoke(main, ["replay", str(src), "--evidence-dir", str(tmp_path / "ev"),
                                  "--alerts-out", str(tmp_path / "alerts.jsonl")], env=env)
    assert result.exit_code == 0, result.output
    alert_id = orjson.loads((tmp_path / "alerts.jsonl").read_bytes().splitlines()[0])["alert_id"]
    out = tmp_path / "bundle.zip"
    result = runner.invoke(main, ["evidence", "export", alert_id, "--evidence-dir", str(tmp_path / "ev"),
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["evidence", "verify", str(out), "--public-key", str(tmp_path / "ev" / "public-key")])
    assert result.exit_code == 0 and result.output.startswith("OK"), result.output
    other = base64.b64encode(bytes(32)).decode()
    result = runner.invoke(main, ["evidence", "verify", str(out), "--public-key", other])
    assert result.exit_code == 1 and "tree_head: Ed25519 signature does not verify" in result.output
    result = runner.invoke(main, ["evidence", "export", "no-such-alert", "--evidence-dir", str(tmp_path / "ev"),
                                  "--out", str(out)])
    assert result.exit_code != 0 and "no evidence for alert no-such-alert" in result.output
    result = runner.invoke(main, ["replay", str(src), "--evidence-dir", str(tmp_path / "ev")], env=env)
    assert result.exit_code != 0 and "is not empty" in result.output  # append-only: no second run


def test_the_same_stream_gives_the_same_log_and_bundle_bytes(sim_lines, sim_log, tmp_path: Path) -> None:
    directory, log, alerts = sim_log
    again, _ = _replay(sim_lines, tmp_path / "again")
    files = sorted(path.relative_to(directory) for path in directory.rglob("*") if path.is_file())
    assert len(files) == 2 + 3 * len(log.logs)  # platforms.jsonl, public-key; a tree's three files
    for name in files:
        assert (directory / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    for alert_id in list(dict.fromkeys(a.alert_id for a in alerts))[:4]:
        assert export(log, alert_id) == export(again, alert_id)


# -- tampering ----------------------------------------------------------------------------------

def _repack(bundle: bytes, manifest: dict | None = None, summary: bytes | None = None) -> bytes:
    """The bundle with its contents changed, as a forger would write it (a valid ZIP)."""
    src = zipfile.ZipFile(io.BytesIO(bundle))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "manifest.json" and manifest is not None:
                data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
            if info.filename == "summary.md" and summary is not None:
                data = summary
            dst.writestr(info, data)
    return out.getvalue()


def _flip_hex(text: str, at: int = 0) -> str:
    return text[:at] + ("0" if text[at] != "0" else "1") + text[at + 1:]


@pytest.fixture(scope="module")
def threshold_bundle(sim_log) -> tuple[bytes, dict]:
    _directory, log, alerts = sim_log
    alert = next(a for a in alerts if a.kind == "legal_threshold" and a.subject.type == "post")
    bundle = export(log, alert.alert_id)
    return bundle, orjson.loads(zipfile.ZipFile(io.BytesIO(bundle)).read("manifest.json"))


def _fails(bundle: bytes, change) -> list[str]:
    manifest = orjson.loads(zipfile.ZipFile(io.BytesIO(bundle)).read("manifest.json"))
    change(manifest)
    failures, _ = verify(_repack(bundle, manifest))
    assert failures, "a changed bundle verified"
    return failures


def test_changing_a_raw_event_names_the_entry_and_the_hash(threshold_bundle) -> None:
    bundle, manifest = threshold_bundle
    n = next(k for k, e in enumerate(manifest["entries"]) if orjson.loads(e["leaf"])["role"] == "crossing event")
    index = manifest["entries"][n]["index"]

    def change(m: dict) -> None:
        entry = orjson.loads(m["entries"][n]["leaf"])
        raw = bytearray(base64.b64decode(entry["raw"]))
        raw[raw.index(b'"views":') + 9] ^= 0x01  # one digit of the views counter
        entry["raw"] = base64.b64encode(bytes(raw)).decode()
        m["entries"][n]["leaf"] = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS).decode()

    failures = _fails(bundle, change)
    assert f"entry {index} (crossing event, event {orjson.loads(manifest['entries'][n]['leaf'])['event_id']}): " \
           "raw bytes do not match their sha256" in failures
    assert any(f.startswith(f"entry {index} ") and "leaf_hash does not match" in f for f in failures)


def test_changing_a_figure_names_it(threshold_bundle) -> None:
    bundle, manifest = threshold_bundle

    def listed(m: dict) -> None:
        m["alert_versions"][0]["evidence"]["value"] += 1

    failures = _fails(bundle, listed)
    assert any(f.startswith("alert_versions[0] (version 1): differs from entry") for f in failures)

    n = next(k for k, e in enumerate(manifest["entries"]) if orjson.loads(e["leaf"])["role"] == "alert version")

    def logged(m: dict) -> None:  # the figure inside the logged alert version, its sha256 fixed up too
        entry = orjson.loads(m["entries"][n]["leaf"])
        body = base64.b64decode(entry["raw"]).replace(b'"value":', b'"value":9', 1)
        entry["raw"], entry["sha256"] = base64.b64encode(body).decode(), hashlib.sha256(body).hexdigest()
        leaf = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
        m["entries"][n]["leaf"], m["entries"][n]["leaf_hash"] = leaf.decode(), leaf_hash(leaf).hex()

    failures = _fails(bundle, logged)
    index = manifest["entries"][n]["index"]
    assert f"entry {index} (alert version): inclusion proof does not lead to tree_head.root_hash" in failures


def test_changing_a_proof_the_tree_head_or_a_signature_names_it(threshold_bundle) -> None:
    bundle, manifest = threshold_bundle
    index = manifest["entries"][2]["index"]
    failures = _fails(bundle, lambda m: m["entries"][2]["inclusion_proof"].__setitem__(
        0, _flip_hex(m["entries"][2]["inclusion_proof"][0])))
    assert any(f.startswith(f"entry {index} ") and "inclusion proof does not lead" in f for f in failures)
    failures = _fails(bundle, lambda m: m["tree_head"].__setitem__("root_hash", _flip_hex(m["tree_head"]["root_hash"])))
    assert any(f.startswith("tree_head: Ed25519 signature does not verify") for f in failures)
    failures = _fails(bundle, lambda m: m["tree_head"].__setitem__("tree_size", m["tree_head"]["tree_size"] + 1))
    assert any(f.startswith("tree_head: Ed25519 signature") for f in failures)
    failures = _fails(bundle, lambda m: m["tree_head"].__setitem__("timestamp", "2030-01-01T00:00:00Z"))
    assert any(f.startswith("tree_head: Ed25519 signature") for f in failures)

    def signature(m: dict) -> None:
        sig = bytearray(base64.b64decode(m["tree_head"]["signature"]))
        sig[5] ^= 0x80
        m["tree_head"]["signature"] = base64.b64encode(bytes(sig)).decode()

    assert _fails(bundle, signature) == [
        f"tree_head: Ed25519 signature does not verify over tree size {manifest['tree_head']['tree_size']}, "
        f"timestamp {manifest['tree_head']['timestamp']}, root {manifest['tree_head']['root_hash']}"]
    if manifest["consistency_proof"]:
        failures = _fails(bundle, lambda m: m["consistency_proof"].__setitem__(0, _flip_hex(m["consistency_proof"][0])))
        assert any(f.startswith("consistency_proof:") for f in failures)
    failures, _ = verify(_repack(bundle, summary=b"# all fine, nothing to see\n"))
    assert any(f.startswith("summary.md:") for f in failures)


def test_flipping_any_byte_of_the_zip_fails(threshold_bundle) -> None:
    bundle, _ = threshold_bundle
    assert verify(bundle)[0] == []
    positions = sorted(set(range(0, 120)) | set(range(len(bundle) - 250, len(bundle)))
                       | set(range(0, len(bundle), max(1, len(bundle) // 400))))
    for at in positions:
        changed = bytearray(bundle)
        changed[at] ^= 0x01
        assert verify(bytes(changed))[0], f"flipping byte {at} of {len(bundle)} went unnoticed"


# -- a prosecutor's tool: the manifest alone, hashlib and an Ed25519 library ----------------------

def _root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """The RFC tree's root from a leaf and its audit path, by descending the tree from the top
    (a different route from the RFC's loop, so the two check each other)."""
    def walk(m: int, n: int, path: list[bytes]) -> bytes:
        if n == 1:
            assert not path
            return leaf
        k = 1 << ((n - 1).bit_length() - 1)
        if m < k:
            return hashlib.sha256(b"\x01" + walk(m, k, path[:-1]) + path[-1]).digest()
        return hashlib.sha256(b"\x01" + path[-1] + walk(m - k, n - k, path[:-1])).digest()
    return walk(index, size, path)


def test_a_prosecutors_tool_reads_a_bundle_from_the_manifest_alone(threshold_bundle) -> None:
    bundle, _ = threshold_bundle
    manifest = orjson.loads(zipfile.ZipFile(io.BytesIO(bundle)).read("manifest.json"))
    head = manifest["tree_head"]
    message = manifest["signed_message_format"].format(**head).encode()
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(manifest["public_key"]))
    public.verify(base64.b64decode(head["signature"]), message)  # raises if it does not hold
    events = []
    for e in manifest["entries"]:
        leaf = e["leaf"].encode("utf-8")
        entry = orjson.loads(leaf)
        leaf_digest = hashlib.sha256(b"\x00" + leaf).digest()
        assert leaf_digest.hex() == e["leaf_hash"]
        path = [bytes.fromhex(h) for h in e["inclusion_proof"]]
        assert _root_from_path(e["index"], head["tree_size"], leaf_digest, path).hex() == head["root_hash"]
        raw = base64.b64decode(entry["raw"])
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
        if entry["role"] != "alert version":
            events.append(orjson.loads(raw))
        else:
            assert orjson.loads(raw) in manifest["alert_versions"]
    crossing = max(events, key=lambda ev: ev["ts"])
    figure = manifest["alert_versions"][-1]["evidence"]
    assert crossing["type"] == "engagement" and crossing["views"] == figure["value"] >= figure["limit"]


# -- bounds -------------------------------------------------------------------------------------

def test_held_events_are_bounded_by_retention_and_a_cited_lost_one_is_named(tmp_path: Path) -> None:
    settings = EvidenceSettings(retention_s=600, max_held_bytes=10_000)
    recorder, _ = new_recorder(None, KEY, settings)
    pipeline = LocalPipeline(Settings(), lambda a: None, lambda _l: None, recorder)
    for n, line in enumerate(simulate_lines(SIM), 1):
        pipeline.feed(line, f"sim:{n}")
        assert recorder.held_bytes <= 10_000 + 2_000
    assert all(h.ts >= recorder.clock[h.platform] - 600 for h in recorder.held.values())
    assert len(recorder.refs) <= 10 * len(recorder.held) + 10
    lost = [orjson.loads(leaf) for log in recorder.logs.logs.values() for leaf in log.leaves
            if b'"retained":false' in leaf]
    assert lost and all(entry["cited_as"] and entry["raw"] is None for entry in lost)  # said, not hidden


# -- the preservation duty ------------------------------------------------------------------------

def _order_run(events: list[dict]):
    recorder, _ = new_recorder(None, KEY)
    alerts: list = []
    pipeline = LocalPipeline(Settings(), alerts.append, lambda _l: None, recorder)
    for n, event in enumerate(events, 1):
        pipeline.feed(orjson.dumps(event), f"t:{n}")
    return [a for a in alerts if a.kind == "evidence_not_preserved"], recorder


PRESERVE = ("remove_content", "preserve_evidence")


def test_removal_before_preserving_raises_evidence_not_preserved_once() -> None:
    found, recorder = _order_run([
        post("p1", 0, text="谣言原文"), order("o1", 1, 60, measures=PRESERVE),
        action("a1", "o1", 5, "content_removed", items=[{"post_id": "p1"}]),
        action("a2", "o1", 6, "account_suspended", items=[{"account_id": "a1"}]),
        action("a3", "o1", 7, "evidence_preserved"), tick(70)])
    assert len(found) == 1
    alert = found[0]
    assert alert.evidence == {"order_id": "o1", "action_id": "a1", "action": "content_removed",
                              "items": ["post:p1"], "measures": list(PRESERVE)}
    assert "Interpretation 2019-15 Art. 5" in alert.legal_refs and alert.subject.id == "o1"
    failures, facts = verify(export(recorder.logs, alert.alert_id))
    assert failures == [] and facts["entries"] >= 3  # the order, the removal, the version


@pytest.mark.parametrize("kind", ["content_removed", "account_suspended"])
def test_either_removal_or_suspension_skips_the_duty(kind: str) -> None:
    found, _ = _order_run([order("o1", 0, 60, measures=["suspend_account", "preserve_evidence"]),
                           action("a1", "o1", 5, kind), tick(70)])
    assert [a.evidence["action"] for a in found] == [kind]


def test_no_alert_when_evidence_was_preserved_first_or_not_asked_for() -> None:
    preserved, _ = _order_run([order("o1", 0, 60, measures=PRESERVE), action("a0", "o1", 2, "evidence_preserved"),
                               action("a1", "o1", 5, "content_removed"), tick(70)])
    not_asked, _ = _order_run([order("o2", 0, 60, measures=["remove_content"]),
                               action("b1", "o2", 5, "content_removed"), tick(70)])
    other_actions, _ = _order_run([order("o3", 0, 60, measures=PRESERVE), action("c1", "o3", 5, "acknowledged"),
                                   action("c2", "o3", 6, "amplification_stopped"), tick(70)])
    assert preserved == not_asked == other_actions == []


# -- the API ------------------------------------------------------------------------------------

def test_the_api_serves_the_bundle_to_the_regulator_and_the_own_platform_only(sim_log) -> None:
    from streams.outputs.api import evidence_bundle

    _directory, log, alerts = sim_log
    latest = {a.alert_id: a.model_dump() for a in alerts}
    alert_id = next(iter(latest))
    tokens = {"reg": {"role": "regulator"}, "weibo": {"role": "platform", "platform": "weibo"},
              "douyin": {"role": "platform", "platform": "douyin"}}
    get = lambda token, aid=alert_id: evidence_bundle(aid, f"Bearer {token}" if token else None, tokens, latest,  # noqa: E731
                                                      lambda a: export(log, a))
    status, body = get("reg")
    assert status == 200 and body == export(log, alert_id) and verify(body)[0] == []
    assert get("weibo")[0] == 200
    assert get("douyin") == (403, {"error": "this token may not read this alert's evidence"})
    assert get(None)[0] == 401 and get("nope")[0] == 401
    assert get("reg", "no-such-alert")[0] == 404
    regulator_only = {"x": {**latest[alert_id], "alert_id": "x", "audience": "regulator", "platform": "*"}}
    assert evidence_bundle("x", "Bearer weibo", tokens, regulator_only, lambda a: b"")[0] == 403


def test_a_repeat_refusal_duty_refusal_cites_every_refused_order() -> None:
    events = []
    for n in range(3):
        events += [order(f"r{n}", n, 60 + n), action(f"x{n}", f"r{n}", n + 0.5, "refused")]
    _found, recorder = _order_run(events + [tick(90)])
    (log,) = recorder.logs.logs.values()
    duty = [aid for aid in log.by_alert if aid.startswith("duty_refusal-")]
    assert len(duty) == 1
    failures, _ = verify(export(log, duty[0]))
    assert failures == []
    entries = [orjson.loads(log.leaves[i]) for i in log.by_alert[duty[0]]]
    assert sorted(orjson.loads(base64.b64decode(e["raw"]))["order_id"] for e in entries if e["role"] == "order") == \
        ["r0", "r1", "r2"]
    assert sum(e["role"] == "action" for e in entries) == 3


# -- the worker's order: a sequencer, one tree per platform, records read back -------------------

def _replayed_in_order(lines: list[bytes], max_bytes: float = math.inf, each=None):  # noqa: ANN001, ANN202
    """``replay --evidence-dir``: the lines through a sequencer (one source, the file) to the end
    of the input; ``each(sequencer)`` after every line. The sequencer and the alerts."""
    from evidence.stream import Sequencer

    recorder, _ = new_recorder(None, KEY)
    sequencer = Sequencer(recorder, ["file"], 300.0, max_bytes)
    alerts: list = []
    pipeline = LocalPipeline(Settings(), alerts.append, lambda _l: None, sequencer)
    for n, line in enumerate(lines):
        pipeline.feed(line, f"t:{n}")
        if each is not None:
            each(sequencer)
    pipeline.finish()
    sequencer.flush()
    return sequencer, alerts


def _interleaved(lines: list[bytes], seed: int) -> tuple[list[tuple], list]:
    """The simulator's stream as the worker's evidence stage may receive it: events spread over
    three input partitions and a stage's alert versions, interleaved at random (each source in
    its own order), alert versions arriving up to 100 deliveries after they were raised."""
    import random
    import zlib

    from events import decode as decode_event

    rng = random.Random(seed)
    raised: list = []
    pipeline = LocalPipeline(Settings(), raised.append, lambda _l: None)
    per_source: dict[str, list] = {f"in/{p}": [] for p in range(3)}
    stage: list = []
    now: dict = {}  # the stage's time per platform (None: its ticks')
    for n, line in enumerate(lines):
        before = len(raised)
        pipeline.feed(line, f"sim:{n}")
        event = decode_event(line, "sim")
        if event.type == "tick":
            for queue in per_source.values():
                queue.append(("tick", event.epoch, event.platform))
        else:
            per_source[f"in/{zlib.crc32(event.event_id.encode()) % 3}"].append(("event", line, event))
        for alert in raised[before:]:
            stage.append(("alert", alert))
        now[event.platform] = max(now.get(event.platform, -1.0), event.epoch)
        held = pipeline.engine.held_from()  # the stage's time after the event, as the worker's sends it
        for platform in dict.fromkeys([event.platform, *(a.platform for a in raised[before:])]):
            stage.append(("tick", min(now.get(platform, -1.0), held), platform))
    before = len(raised)
    pipeline.finish()
    stage.extend(("alert", alert) for alert in raised[before:])
    per_source["stage:x/0"] = stage
    cursors = {s: 0 for s in per_source}
    out: list[tuple] = []
    while cursors:
        source = rng.choice(sorted(cursors))
        queue = per_source[source]
        for _ in range(rng.randint(1, 60)):
            if cursors[source] >= len(queue):
                break
            out.append((source, queue[cursors[source]]))
            cursors[source] += 1
        if cursors[source] >= len(queue):
            del cursors[source]
    return out, raised


def test_the_sequenced_log_is_the_same_whatever_the_interleaving(sim_lines, sim_log) -> None:
    """What the worker's evidence stage does, in process: the same entries and tree heads as
    ``replay --evidence-dir`` (one source) for any interleaving of sources, read back from records."""
    from evidence.stream import Sequencer, read_records

    recorder, _ = new_recorder(None, KEY)
    replayed = Sequencer(recorder, ["file"], 300.0)
    pipeline = LocalPipeline(Settings(), lambda a: None, lambda _l: None, replayed)
    for n, line in enumerate(sim_lines):
        pipeline.feed(line, f"sim:{n}")
    replayed.flush()
    expected = recorder.logs.logs["weibo"]
    assert len(expected.leaves) > 500 and len(expected.by_alert) >= 10
    # demo's log (no sequencer) holds the same entries, in the order they were raised: a campaign's
    # alert versions come up to a minute after later events (its strong pairs travel in batches)
    demo = sim_log[1].logs["weibo"]
    assert demo.leaves != expected.leaves and len(demo.leaves) == len(expected.leaves)
    assert {a: len(e) for a, e in demo.by_alert.items()} == {a: len(e) for a, e in expected.by_alert.items()}

    for seed in (1, 2):
        records = _sequenced(_interleaved(sim_lines, seed)[0])
        got = read_records(records + records[:50])  # at-least-once: records delivered twice are read once
        assert list(got) == ["weibo"]
        assert got["weibo"].leaves == expected.leaves, seed
        assert got["weibo"].tree_heads == expected.tree_heads
        assert got["weibo"].tree.root() == expected.tree.root()
        alert_id = max(expected.by_alert, key=lambda a: len(expected.by_alert[a]))
        assert export(got["weibo"], alert_id) == export(expected, alert_id)


def _sequenced(arrivals: list[tuple]) -> list[dict]:
    """The evidence stage's records for ``arrivals``: one writer (a StreamLog) per platform."""
    from evidence.log import signing_key
    from evidence.recorder import EvidenceRecorder
    from evidence.stream import Sequencer, StreamLog

    records: list[dict] = []
    logs: dict = {}

    def log_for(platform: str) -> StreamLog:
        return logs.setdefault(platform, StreamLog(platform, signing_key(KEY), lambda _p, r: records.append(r)))

    sequencer = Sequencer(EvidenceRecorder(SimpleNamespace(log_for=log_for)), ["in/0", "in/1", "in/2", "stage:x/0"],
                          300.0)
    for source, item in arrivals:
        if item[0] == "tick":
            sequencer.tick(source, item[1], item[2])
        elif item[0] == "event":
            sequencer.event(item[1], item[2], source)
        else:
            sequencer.alert(item[1], source)
            sequencer.alert(item[1], source)  # redelivered: logged once
    sequencer.flush()
    return records


def test_two_platforms_get_a_tree_each_the_same_in_replay_and_on_the_worker(sim_lines, tmp_path: Path) -> None:
    """One writer per platform in every mode: the same trees from replay's folder and from the
    worker's records; no tree holds another platform's entries, and a finding across platforms
    (platform ``*``) is not logged, its platforms' own alerts are."""
    from evidence.stream import Sequencer, read_records

    lines = []
    for line in sim_lines:
        lines.append(line)
        event = orjson.loads(line)
        if event["type"] != "tick":
            lines.append(orjson.dumps({**event, "platform": "douyin"}))
    recorder, _ = new_recorder(tmp_path / "ev", KEY)
    replayed = Sequencer(recorder, ["file"], 300.0)
    alerts: list = []
    pipeline = LocalPipeline(Settings(), alerts.append, lambda _l: None, replayed)
    for n, line in enumerate(lines):
        pipeline.feed(line, f"two:{n}")
    replayed.flush()
    recorder.logs.close()
    assert {"weibo", "douyin", "*"} <= {a.platform for a in alerts}
    on_disk = PlatformLogs.open(tmp_path / "ev")
    assert sorted(on_disk.logs) == ["douyin", "weibo"]
    for platform, log in on_disk.logs.items():
        assert log.leaves and {orjson.loads(leaf)["platform"] for leaf in log.leaves} == {platform}
    regulator_only = next(a for a in alerts if a.platform == "*")
    with pytest.raises(KeyError):
        export(on_disk, regulator_only.alert_id)

    got = read_records(_sequenced(_interleaved(lines, 3)[0]))
    assert sorted(got) == ["douyin", "weibo"]
    for platform, log in on_disk.logs.items():
        assert got[platform].leaves == log.leaves and got[platform].tree_heads == log.tree_heads, platform
    for platform in ("weibo", "douyin"):
        alert_id = next(a.alert_id for a in reversed(alerts) if a.platform == platform)
        assert export(got[platform], alert_id) == export(on_disk, alert_id)
        assert verify(export(on_disk, alert_id))[0] == []


@pytest.mark.parametrize("shift_s", [23 * 3600, -3 * 3600])
def test_another_platforms_clock_changes_nothing_in_a_platforms_evidence_log(shift_s: float) -> None:
    """Douyin's copy of the stream with its clock a day ahead (or hours behind), arriving with
    Weibo's: Weibo's log (its entries, their order, what each alert version cites) is the one it
    gets alone, in replay and through the worker's sequencer. With one time for all platforms,
    Douyin a day ahead made every Weibo item "late": handed over as it came, alert versions
    before the events they cite. Douyin hours behind holds the targets stage back (it goes by
    the earliest platform), so Weibo's ``violence_surge`` comes late: its log waits for it
    rather than record later events first (Engine.held_from)."""
    from evidence.stream import read_records
    from tests.test_platform_time import as_platform, interleaved, naming_others

    def lines_of(events: list[dict]) -> list[bytes]:
        return [orjson.dumps(event) for event in events]

    def replayed(lines: list[bytes]) -> dict:
        return _replayed_in_order(lines)[0].logs.logs

    weibo = lines_of(as_platform("weibo", 0))
    # Douyin's attacks name other persons: no cross_platform in Weibo's alerts
    both = lines_of(interleaved(as_platform("weibo", 0), [naming_others(e) for e in as_platform("douyin", shift_s)]))
    alone = replayed(weibo)["weibo"]
    assert len(alone.by_alert) >= 5
    beside = replayed(both)
    assert sorted(beside) == ["douyin", "weibo"]
    assert beside["weibo"].leaves == alone.leaves
    for seed in (1, 2):
        sequenced = read_records(_sequenced(_interleaved(both, seed)[0]))
        assert sequenced["weibo"].leaves == alone.leaves, seed


def test_what_waits_for_a_lagging_platform_is_bounded() -> None:
    """Douyin three hours behind holds the targets stage, and so Weibo's log, back: Weibo's items
    wait in the sequencer. Over ``max_bytes`` of raw events waiting, the platform waiting with
    most hands its earliest over before its turn: memory stays within the bound whatever the lag,
    and every alert version is still logged (late, so in another order than alone)."""
    from tests.test_platform_time import as_platform, interleaved

    both = [orjson.dumps(event) for event in interleaved(as_platform("weibo", 0), as_platform("douyin", -3 * 3600))]

    def replayed(max_bytes: float):  # noqa: ANN202
        waiting: list[int] = []  # raw bytes waiting after each line
        sequencer, alerts = _replayed_in_order(both, max_bytes, lambda seq: waiting.append(seq.total_bytes))
        assert sequencer.total_bytes == 0 and sequencer.heaps == {} and sequencer.waiting_bytes == {}
        return sequencer, alerts, max(waiting)

    unbounded, alerts, most = replayed(math.inf)
    assert unbounded.forced == 0 and most > 400_000  # Weibo's stream after its first post about a target
    bounded, again, most = replayed(200_000)
    assert bounded.forced > 0 and most <= 200_000
    assert [a.to_json() for a in again] == [a.to_json() for a in alerts]  # alerts never depend on the log
    for platform in ("weibo", "douyin"):
        logged = set(bounded.logs.logs[platform].by_alert)
        assert logged == set(unbounded.logs.logs[platform].by_alert) == {
            a.alert_id for a in alerts if a.platform == platform}


def test_the_writers_compact_tree_has_the_rfc_root_at_every_size() -> None:
    """The worker keeps only a tree's right edge (a table row); its roots are the full tree's."""
    from evidence.stream import CompactTree

    data = [f"entry {i}".encode() for i in range(70)]
    compact, full = CompactTree(), MerkleTree()
    assert compact.root() == full.root()
    for n, d in enumerate(data, 1):
        assert compact.append(d) == full.append(d) == n - 1
        assert compact.root() == full.root() == naive_root(data[:n])
        assert len(compact.edge) == bin(n).count("1")
        restored = CompactTree(compact.size, compact.edge)  # from the stored state, as after a restart
        assert restored.append(b"next") == n and restored.root() == naive_root(data[:n] + [b"next"])


def test_an_evidence_folder_is_new_and_its_index_names_no_path(sim_log, tmp_path: Path) -> None:
    """``replay`` writes only into a new or empty folder; a reader opens only the folder a
    platform's id hashes to, whatever ``platforms.jsonl`` says; a one-tree folder of the earlier
    layout still opens."""
    from evidence.log import folder_name

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "leftover").mkdir()
    with pytest.raises(FileExistsError):
        new_recorder(tmp_path / "used", KEY)

    directory, logs, _alerts = sim_log
    forged = tmp_path / "forged"
    forged.mkdir()
    row = {"platform": "weibo", "folder": str(directory / folder_name("weibo"))}  # an absolute path
    (forged / "platforms.jsonl").write_bytes(orjson.dumps(row) + b"\n")
    with pytest.raises(ValueError, match="is not the one of platform"):
        PlatformLogs.open(forged)

    legacy = directory / folder_name("weibo")  # a tree's own folder: the layout before trees per platform
    alert_id = next(iter(logs.logs["weibo"].by_alert))
    assert export(PlatformLogs.open(legacy), alert_id) == export(logs, alert_id)


def test_the_demo_refuses_a_used_evidence_folder_with_a_clear_error(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("someone else's file")
    result = CliRunner().invoke(main, ["demo", "--port", "0"], env={"STORMWATCH_EVIDENCE__DIR": str(used)})
    assert result.exit_code == 1 and "is not empty" in result.output, result.output
    assert (used / "notes.txt").read_text() == "someone else's file" and len(list(used.iterdir())) == 1


def test_the_worker_holds_two_platforms_events_apart_whatever_their_ids_hold() -> None:
    """The worker's evidence stage holds each raw event once per (platform, event_id): platform
    ``a`` with event ``b<TAB>c`` and platform ``a<TAB>b`` with event ``c`` are two events, both
    logged, and letting one go keeps the other (the rows were once joined with plain tabs). A
    copy stamped later moves no time (it released everything waiting, out of turn)."""
    import types
    from datetime import datetime, timezone

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from streams.kafka.evidence import EvidenceStage, _Partition
    from streams.settings import Settings

    held: dict = {}
    part = _Partition(0, Settings(), Ed25519PrivateKey.generate(), ["src"], held, {}, [])
    stage = types.SimpleNamespace(held=held)

    def post(platform: str, event_id: str) -> bytes:
        return orjson.dumps({"type": "post", "event_id": event_id, "platform": platform, "ts": "2026-11-30T00:00:00Z",
                             "post_id": "p", "account_id": "u", "kind": "original"})

    EvidenceStage._handle(stage, part, "event", "src", post("a", "b\tc"))
    EvidenceStage._handle(stage, part, "event", "src", post("a\tb", "c"))
    assert len(held) == 2
    copy = orjson.loads(post("a", "b\tc"))
    EvidenceStage._handle(stage, part, "event", "src", orjson.dumps({**copy, "ts": "2026-12-30T00:00:00Z"}))
    assert len(held) == 2 and part.sequencer.waiting() == 2  # a copy: not held again
    # not the copy's time: the original's, less the margin
    assert part.sequencer.watermark.of("a") == datetime(2026, 11, 30, tzinfo=timezone.utc).timestamp() - 300
    assert sorted((key[2], key[3]) for heap in part.sequencer.heaps.values() for key, *_ in heap) == \
        [("a", "b\tc"), ("a\tb", "c")]
    part.evicted(("a", "b\tc"))
    assert [orjson.loads(base64.b64decode(raw))["platform"] for raw in held.values()] == ["a\tb"]


def test_the_sequencer_hands_over_the_first_copy_of_an_event_and_takes_an_alert_twice() -> None:
    """Copies of one event (same platform, event_id and ts) leave the sequencer in the order
    they came, so the log keeps the first as the worker does (a later copy whose bytes sort
    first, "completed" before "refused", once replaced it in the signed log); a version of an
    alert sent twice while it waits no longer makes the heap compare two alerts (TypeError)."""
    from events import Alert, decode
    from evidence.stream import Sequencer

    observed: list[bytes] = []
    recorder = SimpleNamespace(observe=lambda raw, event: observed.append(raw), record=lambda alert: None)
    sequencer = Sequencer(recorder, ["file"], margin_s=0.0)
    first = (b'{"type":"platform_action","event_id":"e2","platform":"weibo","ts":"2026-11-30T08:05:00+08:00",'
             b'"action_id":"a1","order_id":"o1","action":"refused"}')
    again = first.replace(b"refused", b"completed")
    assert again < first  # the copy that sorts first by its bytes comes second
    for raw in (first, again):
        sequencer.hold(raw, decode(raw, "test"))
    alert = Alert(alert_id="a-1", version=1, kind="order_refused", severity="critical", platform="weibo",
                  ts="2026-11-30T08:06:00+08:00", first_ts="2026-11-30T08:06:00+08:00", summary="s",
                  subject={"type": "order", "id": "o1"})
    sequencer.alert(alert, None)
    sequencer.alert(alert.model_copy(update={"summary": "sent again"}), None)
    sequencer.flush()
    assert observed == [first, again]


def test_the_log_keeps_the_copy_that_counted_not_a_later_one_stamped_earlier() -> None:
    """A copy of an event the engine dropped never reaches the evidence log in process: stamped
    earlier, it would be handed over first and kept in place of the copy that counted (the
    worker logs the first arrival)."""
    observed: list[bytes] = []
    recorder = SimpleNamespace(observe=lambda raw, event: observed.append(raw), record=lambda alert: None)
    pipeline = LocalPipeline(Settings(), lambda a: None, lambda _l: None, recorder)
    first = orjson.dumps({"type": "post", "event_id": "e1", "platform": "weibo", "ts": "2026-11-30T00:10:00Z",
                          "post_id": "p1", "account_id": "u1", "kind": "original", "text": "first"})
    copy = first.replace(b"00:10:00Z", b"00:09:00Z").replace(b'"first"', b'"edited"')
    for n, line in enumerate((first, copy), 1):
        pipeline.feed(line, f"t:{n}")
    assert observed == [first]


# -- bounds are each platform's own ---------------------------------------------------------------

def _leaves(logs, platform: str) -> list[bytes]:
    return list(logs.logs[platform].leaves)


def test_another_platforms_flood_lets_none_of_a_platforms_evidence_go(tmp_path: Path) -> None:
    """Over the byte bound the platform holding most lets its oldest go: Douyin sending 3 KB posts
    beside Weibo's stream (three times the bound) leaves Weibo, which holds under half of it, its
    log byte for byte as alone. With the oldest of all going first, the flood pushed Weibo's held
    events out before its alerts cited them."""
    weibo = list(simulate_lines(SIM))
    settings = EvidenceSettings(max_held_bytes=2 * sum(len(line) for line in weibo) + 10_000)
    flooded = []
    for n, line in enumerate(weibo):
        flooded.append(line)
        event = orjson.loads(line)
        if n % 2 and "ts" in event:  # at the time of the line before it: moves no one's time
            flooded.append(orjson.dumps({"type": "post", "event_id": f"flood{n}", "platform": "douyin",
                                         "ts": event["ts"], "post_id": f"f{n}", "account_id": f"u{n % 50}",
                                         "kind": "original", "text": f"{n} " + "水" * 1000}))
    assert sum(len(line) for line in flooded) - sum(len(line) for line in weibo) > 3 * settings.max_held_bytes
    alone, alerts_alone = _replay(weibo, tmp_path / "alone", settings)
    beside, alerts_beside = _replay(flooded, tmp_path / "beside", settings)
    assert [a for a in alerts_beside if a.platform == "weibo"] == alerts_alone
    assert _leaves(beside, "weibo") == _leaves(alone, "weibo")


def test_the_recorder_is_bounded_whatever_platform_names_come() -> None:
    """Platform names are strings anyone may send: 200 of them, 2 KB each, hold no more than the
    bound (a review's reproducer against a bound per platform)."""
    from events import decode
    from evidence.stream import Sequencer
    recorder, _ = new_recorder(None, KEY, EvidenceSettings(max_held_bytes=10_000))
    sequencer = Sequencer(recorder, ["file"], 300.0)
    for n in range(200):
        line = orjson.dumps({**post(f"x{n}", n), "platform": f"p{n}", "text": "x" * 2000})
        sequencer.observe(line, decode(line, "t"))
        assert recorder.held_bytes <= 10_000
    sequencer.release(everything=True)
    assert 0 < recorder.held_bytes <= 10_000
    holding = {platform for platform, _event_id in recorder.held}
    assert set(recorder.arrival) == set(recorder.clock) == holding and len(holding) <= 5  # no trace of the rest


def _recorder_fed(settings: EvidenceSettings):
    from events import decode
    recorder, _ = new_recorder(None, KEY, settings)

    def feed(raw: dict) -> None:
        line = orjson.dumps(raw)
        recorder.observe(line, decode(line, "t"))

    return recorder, feed


def test_retention_goes_by_each_platforms_own_event_time() -> None:
    """Douyin's events a day ahead of Weibo's let none of Weibo's held events go."""
    recorder, feed = _recorder_fed(EvidenceSettings(retention_s=600))
    feed(post("p1", 0))
    feed({**post("b1", 0), "platform": "douyin", "ts": "2026-12-01T09:00:00+08:00"})
    feed(post("p2", 5))
    assert sorted(orjson.loads(h.raw)["post_id"] for h in recorder.held.values()) == ["b1", "p1", "p2"]
    feed(post("p3", 11))  # Weibo's own time: p1 is now past its retention
    assert sorted(orjson.loads(h.raw)["post_id"] for h in recorder.held.values()) == ["b1", "p2", "p3"]


def test_over_max_orders_the_platform_holding_most_lets_its_oldest_go_and_only_its_watch() -> None:
    """Over ``max_orders`` the oldest order of the platform holding most goes: Douyin's three new
    orders drop Douyin's oldest, not Weibo's. When Weibo's oldest order goes, another order of
    Weibo's on the same post keeps watching it (the whole watch of the item went, under the new
    order's platform)."""
    recorder, feed = _recorder_fed(EvidenceSettings(max_orders=4))
    feed(order("o1", 0, 5, items=[{"post_id": "p1"}]))
    feed(order("o2", 1, 5, items=[{"post_id": "p1"}]))
    for n in range(3):
        feed({**order(f"d{n}", 2, 5, items=[{"post_id": "p1"}]), "platform": "douyin"})
    assert list(recorder.orders["weibo"]) == ["o1", "o2"] and list(recorder.orders["douyin"]) == ["d1", "d2"]
    feed(order("o3", 3, 5, items=[{"post_id": "p3"}]))  # Weibo now holds most: its o1 goes
    feed(post("r1", 10, parent_id="p1", kind="repost"))  # after o2's deadline
    assert list(recorder.orders["weibo"]) == ["o2", "o3"] and list(recorder.orders["douyin"]) == ["d1", "d2"]
    assert [orjson.loads(h.raw)["post_id"] for h in recorder.orders["weibo"]["o2"]["after"]] == ["r1"]


def test_a_restarted_recorder_gets_each_platforms_clock_back_from_what_it_holds() -> None:
    """A restarted worker rebuilds the recorder from the events it holds. An action with no
    order (never held) moved the platform's clock in the uninterrupted run only, so a late event
    after the restart let fewer events go (a review's reproducer, session 20): the clock now goes
    by the events the recorder takes, which it holds."""
    from events import decode
    settings = EvidenceSettings(retention_s=600)

    def ev(raw: dict):  # noqa: ANN202
        line = orjson.dumps(raw)
        return line, decode(line, "t")

    first = ev(post("p0", 0))
    no_order = ev({"type": "platform_action", "event_id": "a-none", "platform": "weibo", "ts": post("x", 11)["ts"],
                   "action_id": "a1", "action": "content_removed"})
    live, _ = new_recorder(None, KEY, settings)
    for raw, event in (first, no_order):
        live.observe(raw, event)
    again, _ = new_recorder(None, KEY, settings)
    for held in sorted(live.held.values(), key=lambda h: h.order):
        again.observe(*ev(orjson.loads(held.raw)))
    late = ev(post("p1", 1))
    live.observe(*late)
    again.observe(*late)
    assert sorted(again.held) == sorted(live.held) and len(live.held) == 2
