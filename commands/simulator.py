"""A seeded generator of a realistic stream, for ``demo``, the benchmark and tests.

One platform's hour, in event-time order: ordinary posts and reposts; a water army (水军) that
floods a target in waves of near-identical insults under one hashtag; a defamatory post that
goes viral past the legal figures (5,000 views, 500 reposts) with engagement counters; reports
from users and the target; regulator orders (one completed on time, one that goes overdue, one
refused); and ticks. The same seed gives the same stream, byte for byte.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

from events import format_ts

START = datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc).timestamp()

WORDS = ("今天 明天 昨天 周末 早上 晚上 刚刚 终于 还是 已经 真的 有点 特别 非常 一起 朋友 同事 老师 妈妈 孩子 "
         "猫咪 小狗 天气 下雨 太阳 地铁 公交 火锅 咖啡 奶茶 早餐 午饭 电影 音乐 球赛 比赛 考试 作业 加班 工作 "
         "公司 学校 医院 超市 公园 旅行 北京 上海 成都 广州 手机 电脑 游戏 小说 新闻 股票 房价 工资 假期 快递 "
         "好吃 好看 好玩 喜欢 觉得 知道 希望 开心 难过 无聊 累了 睡觉 起床 出门 回家 排队 迟到 下班 放假 运动 "
         "跑步 健身 减肥 做饭 洗衣服 打扫 学习 读书 写字 画画 拍照 唱歌 跳舞 散步 聊天 购物 搬家 装修 结婚").split()
STOCK = ["转发", "支持", "哈哈哈", "说得对", "早上好", "太好了", "加油", "同意楼上", "路过", "沙发"]
ENDINGS = ["", "。", "！", "～", "😂", "，大家怎么看？", "…", "🙏"]
INSULTS = ["{t}就是个骗子，大家别信她", "{t}这种人怎么还有脸出来", "{t}滚出网络！", "扒一扒{t}的黑历史",
           "{t}人品太差了，恶心", "大家一起来骂{t}", "{t}活该被骂"]
RUMOR = "爆料：{t}收受贿赂还出轨，证据确凿，大家转发让更多人看到！"
ARMY_TAGS = ["#{t}滚出去#", "#扒{t}#"]


@dataclass(frozen=True)
class SimConfig:
    seed: int = 7
    start: float = START
    minutes: int = 60
    organic_per_s: float = 20.0
    army_accounts: int = 40
    army_waves: int = 6
    viral_reposts: int = 900
    tick_every_s: int = 60


class _Stream:
    """Collects events and yields them in (ts, sequence) order."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, dict]] = []
        self.seq = 0

    def add(self, ts: float, event: dict) -> None:
        event["ts"] = format_ts(round(ts, 3))
        self.seq += 1
        event["event_id"] = event.get("event_id") or f"ev-{self.seq}"
        heapq.heappush(self.heap, (round(ts, 3), self.seq, event))

    def drain(self) -> Iterator[dict]:
        while self.heap:
            yield heapq.heappop(self.heap)[2]


def simulate(config: SimConfig = SimConfig()) -> Iterator[dict]:
    """The scenario's events as dicts, in event-time order."""
    rng = random.Random(config.seed)
    out = _Stream()
    t0, span = config.start, config.minutes * 60
    platform = "weibo"
    target = {"id": "user-lin", "minor": False, "public_figure": False}
    name = "林某"

    def post(ts: float, pid: str, author: str, kind: str = "original", text: str = "", **extra) -> None:
        out.add(ts, {"type": "post", "platform": platform, "post_id": pid, "account_id": author, "kind": kind,
                     "text": text, **extra})

    # Ordinary life: originals, and reposts of recent originals.
    originals: list[str] = []
    n_organic = int(config.organic_per_s * span)
    times = sorted(t0 + rng.random() * span for _ in range(n_organic))
    for i, ts in enumerate(times):
        account = f"u{rng.randrange(5000)}"
        if originals and rng.random() < 0.3:
            parent = rng.choice(originals[-200:])
            post(ts, f"p{i}", account, "repost", "转发", parent_id=parent, root_id=parent)
        else:
            text = (rng.choice(STOCK) if rng.random() < 0.1
                    else "".join(rng.choices(WORDS, k=rng.randrange(4, 14))) + rng.choice(ENDINGS))
            post(ts, f"p{i}", account, "original", text,
                 account={"followers": rng.randrange(20, 3000), "created_at": format_ts(t0 - 86400 * rng.randrange(30, 3000))})
            originals.append(f"p{i}")

    # A water army: new accounts, shared device prefix, waves of near-identical insults.
    army = [f"army{k:03d}" for k in range(config.army_accounts)]
    for wave in range(config.army_waves):
        wave_start = t0 + span * (0.15 + 0.12 * wave)
        tag = ARMY_TAGS[wave % 2].format(t=name)
        for k, account in enumerate(army):
            if rng.random() < 0.15:
                continue
            ts = wave_start + rng.random() * 90
            text = rng.choice(INSULTS).format(t=name) + rng.choice(["", "！", "。", "!!"]) + " " + tag
            post(ts, f"army-{wave}-{k}", account, "original", text, hashtags=[tag.strip("#")], targets=[target],
                 labels=["insult"], account={"followers": rng.randrange(0, 15), "created_at": format_ts(t0 - 86400 * 3),
                                             "device_id": f"dev-{k % 5}", "ip_prefix": "10.23.4"})

    # A defamatory rumour about the same person that goes viral, with engagement counters.
    root_ts = t0 + span * 0.1
    post(root_ts, "rumor-1", "gossip-king", "original", RUMOR.format(t=name), targets=[target],
         labels=["defamation", "sexual_rumor"], account={"followers": 52000, "public_account": True})
    growth = sorted(rng.expovariate(1 / (span * 0.2)) for _ in range(config.viral_reposts))
    for n, delay in enumerate(d for d in growth if root_ts + d < t0 + span):
        post(root_ts + 1 + delay, f"rumor-rp{n}", f"u{rng.randrange(5000)}", "repost", "转发",
             parent_id="rumor-1", root_id="rumor-1")
        if n % 25 == 0:
            out.add(root_ts + 1.5 + delay, {"type": "engagement", "platform": platform, "post_id": "rumor-1",
                                            "views": 12 * (n + 1), "reposts": n + 1, "comments": n // 3,
                                            "likes": 2 * n, "reach_accounts": 9 * (n + 1)})
    # Reports: users, then the target themself, about the rumour and the insults.
    for r in range(60):
        ts = root_ts + 120 + rng.random() * span * 0.6
        out.add(ts, {"type": "report", "platform": platform, "report_id": f"rep-{r}",
                     "reporter_id": "user-lin" if r % 10 == 0 else f"u{rng.randrange(5000)}",
                     "reporter_is_target": r % 10 == 0, "post_id": "rumor-1" if r % 2 else None,
                     # a report on a post names the post; the post names whom it attacks
                     "account_id": None if r % 2 else rng.choice(army), "targets": [] if r % 2 else [target],
                     "category": "defamation" if r % 2 else "insult"})

    # Regulator orders: on time, overdue, refused.
    def order(ts: float, oid: str, within: float, items: list[dict], measures: list[str]) -> None:
        out.add(ts, {"type": "order", "platform": platform, "order_id": oid, "regulator": "cac",
                     "deadline": format_ts(ts + within), "legal_basis": "网络暴力信息治理规定 第20条",
                     "measures": measures, "items": items, "case_id": f"case-{oid}"})

    def action(ts: float, aid: str, oid: str, kind: str, items: list[dict] | None = None) -> None:
        out.add(ts, {"type": "platform_action", "platform": platform, "action_id": aid, "order_id": oid,
                     "action": kind, "items": items or []})

    # Deadlines and answers scale with the scenario's length (a 60-minute run: 15, 12 and 6 minutes).
    o1 = t0 + span * 0.3
    order(o1, "order-rumor", span * 0.25, [{"post_id": "rumor-1"}], ["remove_content", "preserve_evidence"])
    action(o1 + span * 0.03, "act-1", "order-rumor", "acknowledged")
    action(o1 + span * 0.08, "act-2", "order-rumor", "evidence_preserved")
    o2 = t0 + span * 0.35
    order(o2, "order-army", span * 0.2, [{"account_id": a} for a in army[:5]], ["suspend_account"])
    action(o2 + span * 0.05, "act-3", "order-army", "account_suspended", [{"account_id": a} for a in army[:5]])
    action(o2 + span * 0.07, "act-4", "order-army", "completed")
    o3 = t0 + span * 0.5
    order(o3, "order-tag", span * 0.1, [{"hashtag": ARMY_TAGS[0].format(t=name).strip("#")}], ["stop_amplification"])
    action(o3 + span * 0.11, "act-5", "order-tag", "refused")

    for s in range(0, span + config.tick_every_s, config.tick_every_s):
        out.add(t0 + s, {"type": "tick"})
    yield from out.drain()


def simulate_lines(config: SimConfig = SimConfig()) -> Iterator[bytes]:
    for event in simulate(config):
        yield orjson.dumps(event)


def redeliver(lines: list[bytes], share: float = 0.1, seed: int = 1) -> list[bytes]:
    """The same lines as at-least-once delivery hands them over: ``share`` of the events comes a
    second time, byte for byte, half right after the original and half 50-400 lines later.
    Ticks are left alone. Tests and ``stormwatch bench`` use it to show duplicates are harmless."""
    rng = random.Random(seed)
    out: list[bytes] = []
    later: list[tuple[int, int, bytes]] = []  # (line to come after, order, the copy)
    for i, line in enumerate(lines):
        out.append(line)
        while later and later[0][0] <= i:
            out.append(heapq.heappop(later)[2])
        if b'"event_id"' not in line or rng.random() >= share:
            continue
        if rng.random() < 0.5:
            out.append(line)
        else:
            heapq.heappush(later, (i + rng.randint(50, 400), i, line))
    out.extend(copy for _at, _i, copy in sorted(later))
    return out
