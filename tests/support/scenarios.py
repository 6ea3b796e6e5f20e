"""Seeded scenario builders for the water-army tests: organic life, news, campaigns (Chinese text)."""

from __future__ import annotations

import random
from datetime import datetime, timezone

from events import format_ts

T0 = datetime(2026, 11, 30, tzinfo=timezone.utc).timestamp()
WORDS = ("今天 天气 地铁 火锅 咖啡 电影 音乐 球赛 考试 加班 公司 学校 医院 超市 公园 旅行 手机 电脑 游戏 小说 新闻 "
         "股票 房价 工资 假期 快递 好吃 好看 喜欢 觉得 知道 希望 开心 难过 无聊 睡觉 起床 出门 回家 排队 迟到 下班 "
         "放假 运动 跑步 健身 做饭 学习 读书 拍照 唱歌 散步 聊天 购物 搬家 装修 朋友 同事 老师 孩子 猫咪 小狗").split()
INSULTS = ["{t}就是个骗子大家别信她的鬼话", "{t}这种人怎么还有脸出来丢人现眼", "扒一扒{t}的黑历史真是让人恶心",
           "{t}人品太差了谁跟她合作谁倒霉", "大家一起来骂{t}让她滚出网络", "{t}活该被骂她做的事天理难容"]


class Stream:
    def __init__(self, seed: int = 1, platform: str = "weibo") -> None:
        self.rng = random.Random(seed)
        self.events: list[dict] = []
        self.platform = platform
        self.n = 0

    def post(self, minute: float, author: str, text: str = "", kind: str = "original", parent: str | None = None,
             **extra) -> str:
        self.n += 1
        pid = extra.pop("post_id", f"p{self.n}")
        self.events.append({"type": "post", "event_id": f"e{self.n}", "platform": self.platform,
                            "ts": format_ts(T0 + minute * 60), "post_id": pid, "account_id": author, "kind": kind,
                            "parent_id": parent, "text": text, **extra})
        return pid

    def words(self, k: int) -> str:
        return "".join(self.rng.choices(WORDS, k=k))

    def organic(self, accounts: int, posts: int, minutes: float, start: float = 0, prefix: str = "u") -> None:
        """Ordinary life: own words, some reposts of recent posts, a few stock phrases."""
        recent: list[str] = []
        for minute in sorted(start + self.rng.random() * minutes for _ in range(posts)):
            account = f"{prefix}{self.rng.randrange(accounts)}"
            if recent and self.rng.random() < 0.25:
                self.post(minute, account, "转发", "repost", self.rng.choice(recent[-50:]))
            else:
                recent.append(self.post(minute, account, self.words(self.rng.randrange(5, 14))))

    def vary(self, text: str, edits: int) -> str:
        """Heavier variation: characters swapped for others, punctuation and emoji added."""
        chars = list(text)
        for _ in range(edits):
            chars[self.rng.randrange(len(chars))] = self.rng.choice("的了是在有我他她这那么")
        return "".join(chars) + self.rng.choice(["", "！", "!!", "。", "😡", "🙄", "，转起来"])

    def campaign(self, members: list[str], waves: int, every_min: float, width_min: float, start: float,
                 target: dict, edits: int = 1, join: float = 0.85, hashtag: str | None = None, **extra) -> None:
        """Waves of near-identical insults about ``target``, each wave a new template."""
        for w in range(waves):
            template = self.rng.choice(INSULTS).format(t=target.get("name", "她")) + self.words(3)
            tag = hashtag or f"话题{w % 2}"
            for account in members:
                if self.rng.random() > join:
                    continue
                minute = start + w * every_min + self.rng.random() * width_min
                self.post(minute, account, self.vary(template, edits) + f" #{tag}#", hashtags=[tag],
                          targets=[{"id": target["id"], "minor": target.get("minor", False)}], labels=["insult"],
                          **extra)

    def sorted_events(self) -> list[dict]:
        self.events.sort(key=lambda e: (datetime.fromisoformat(e["ts"]), e["event_id"]))
        return self.events + [{"type": "tick", "ts": format_ts(T0 + 86400 * 3)}]
