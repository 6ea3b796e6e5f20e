"""``summary.md`` of a bundle: what the figures mean and which provisions they relate to, 中文 and English.

Derived only from the manifest (alert versions and entries), so ``verify`` can derive it again
and refuse a summary that says anything the signed data does not. Stormwatch flags candidate
cases: the text says so, and leaves the legal judgement to prosecutors and courts.
"""

from __future__ import annotations

from typing import Any

import orjson

# Provisions an alert may cite: (中文, English). Looked up by the start of the alert's legal ref.
PROVISIONS: dict[str, tuple[str, str]] = {
    "Criminal Law Art. 246": ("《刑法》第二百四十六条（侮辱罪、诽谤罪）",
                              "Criminal Law Art. 246 (insult and defamation)"),
    "Criminal Law Art. 286-1": ("《刑法》第二百八十六条之一（拒不履行信息网络安全管理义务罪）",
                                "Criminal Law Art. 286-1 (refusing to perform information-network security "
                                "management duties)"),
    "Interpretation 2013-21 Art. 2(1)": (
        "法释〔2013〕21号第二条第（一）项：同一诽谤信息实际被点击、浏览次数达到五千次以上，或者被转发次数达到五百次以上，"
        "应当认定为“情节严重”",
        "Interpretation 2013-21 Art. 2(1): the same defamatory information clicked or viewed 5,000 times or more, "
        "or reposted 500 times or more, is 'serious circumstances'"),
    "Interpretation 2013-21 Art. 4": (
        "法释〔2013〕21号第四条：一年内多次实施利用信息网络诽谤他人行为未经处理的，点击、浏览、转发次数累计计算",
        "Interpretation 2013-21 Art. 4: within one year, repeated defamation not yet dealt with is counted "
        "cumulatively (clicks, views, reposts)"),
    "Interpretation 2019-15 Art. 2": ("法释〔2019〕15号第二条：监管部门责令采取改正措施",
                                      "Interpretation 2019-15 Art. 2: corrective measures ordered by a regulatory "
                                      "department"),
    "Interpretation 2019-15 Art. 3": ("法释〔2019〕15号第三条：致使违法信息大量传播（如点击五万次、二千个账号、二千条信息）",
                                      "Interpretation 2019-15 Art. 3: causing illegal information to spread widely "
                                      "(e.g. 50,000 clicks, 2,000 accounts, 2,000 items)"),
    "Interpretation 2019-15 Art. 5": ("法释〔2019〕15号第五条：致使刑事案件证据灭失，情节严重",
                                      "Interpretation 2019-15 Art. 5: causing the loss of evidence of a criminal "
                                      "case, with serious circumstances"),
    "Interpretation 2019-15 Art. 6(2)": ("法释〔2019〕15号第六条第（二）项：二年内经多次责令改正拒不改正",
                                         "Interpretation 2019-15 Art. 6(2): refusing correction orders several times "
                                         "within two years"),
    "Interpretation 2019-15 Art. 10(4)": ("法释〔2019〕15号第十条第（四）项：非法利用信息网络，情节严重",
                                          "Interpretation 2019-15 Art. 10(4): illegal use of information networks, "
                                          "serious circumstances"),
    "Opinions": ("《关于依法惩治网络暴力违法犯罪的指导意见》（法发〔2023〕14号）",
                 "Opinions on Punishing Online Violence in Accordance with Law (2023)"),
    "Provisions on the Governance of Online Violence Information": (
        "《网络暴力信息治理规定》（2024年）", "Provisions on the Governance of Online Violence Information (2024)"),
}

KINDS: dict[str, tuple[str, str]] = {
    "legal_threshold": ("诽谤信息的传播数字达到法律规定的数额（计数器历史记录至越过数额的事件为止）。",
                        "A defamatory post's spread reached a figure named in law; the counter history up to and "
                        "including the crossing event is logged."),
    "viral_spread": ("有害内容的传播异常快速，或预测将达到法律规定的数额。",
                     "Harmful content spreading abnormally fast, or forecast to reach a legal figure."),
    "water_army_campaign": ("多个账号协同行动（水军）：近似内容、同一对象、同步时间窗口。成员帖子为抽样。",
                            "Accounts acting in coordination (water army); members' posts are a sample."),
    "violence_surge": ("某人在短时间内受到集中攻击（大量账号、举报、有害标签）。",
                       "A person under a concentrated attack (many accounts, reports, harmful labels)."),
    "illegal_marketing": ("公众账号推送网络暴力内容以获取流量。", "Public accounts pushing online-violence content for traffic."),
    "order_overdue": ("监管部门的责令改正通知超过期限仍未完成。", "A regulator's order passed its deadline without completion."),
    "order_refused": ("平台拒绝执行监管部门的责令改正通知。", "The platform refused a regulator's order."),
    "continued_dissemination": ("责令处置的内容在期限后继续传播（已记录期限后的活动样本）。",
                                "Ordered items kept spreading after the deadline (a sample of the activity is logged)."),
    "duty_refusal": ("拒不履行信息网络安全管理义务的候选案件：拒不改正且造成严重后果。",
                     "Candidate case of refusing information-network security duties: refusal plus serious "
                     "consequences."),
    "evidence_not_preserved": ("通知要求保存证据，但平台在保存证据之前删除了内容或封禁了账号。",
                               "The order required preserving evidence, but the platform removed content or "
                               "suspended accounts before any evidence_preserved."),
}

FIGURES = ("threshold", "value", "limit", "views", "reposts", "comments", "reach_accounts", "account_count",
           "reports", "score", "followers", "accounts_reached", "post_count", "views_after_deadline",
           "reposts_after_deadline", "accounts_reached_after_deadline", "posts_after_deadline", "grounds",
           "missing_measures", "deadline", "order_id", "action_id", "action", "post_id", "account_id", "target_id")


def _provision(ref: str) -> tuple[str, str]:
    for start, texts in PROVISIONS.items():
        if ref.startswith(start):
            return texts
    return ref, ref


def _entries(manifest: dict) -> list[dict[str, Any]]:
    return [orjson.loads(e["leaf"]) for e in manifest["entries"]]


def render_summary(manifest: dict) -> str:
    versions = manifest["alert_versions"]
    latest = versions[-1] if versions else {}
    kind = latest.get("kind", "?")
    zh, en = KINDS.get(kind, ("", ""))
    head = manifest["tree_head"]
    lines = [f"# 证据包 / Evidence bundle: {manifest['alert_id']}", "",
             "Stormwatch 标记的是**候选**案件；法律判断由检察机关和法院作出。",
             "Stormwatch flags **candidate** cases; the legal judgement is for prosecutors and courts.", "",
             f"- 类型 / Kind: `{kind}` — {zh} {en}",
             f"- 平台 / Platform: `{latest.get('platform')}`; 对象 / Subject: "
             f"`{(latest.get('subject') or {}).get('type')}` `{(latest.get('subject') or {}).get('id')}`",
             f"- 版本 / Versions: {len(versions)} (first {latest.get('first_ts')}, latest {latest.get('ts')})",
             f"- 签名树头 / Signed tree head: size {head['tree_size']}, root `{head['root_hash']}`, "
             f"event time {head['timestamp']}", "",
             "## 数字 / Figures", ""]
    for v in versions:
        ev = v.get("evidence", {})
        figures = ", ".join(f"{k} = {ev[k]}" for k in FIGURES if k in ev and not isinstance(ev[k], dict))
        lines.append(f"- v{v.get('version')} @ {v.get('ts')}: {v.get('summary')}" + (f" ({figures})" if figures else ""))
    lines += ["", "## 相关规定 / Provisions", ""]
    for ref in dict.fromkeys(r for v in versions for r in v.get("legal_refs", [])):
        ref_zh, ref_en = _provision(ref)
        lines.append(f"- `{ref}`: {ref_zh} / {ref_en}")
    lines += ["", "## 证据条目 / Entries", "",
              "原始字节按接收时保存（base64），即使平台删除内容也可证明其内容、时间和传播范围。",
              "Raw bytes are kept as received (base64), so content removed by a platform can still be shown.", "",
              "| index | role | type | event | ts | sha256 |", "|---|---|---|---|---|---|"]
    for entry in _entries(manifest):
        digest = (entry.get("sha256") or "not retained")[:16]
        event = entry.get("event_id") or entry.get("cited_as") or ""
        lines.append(f"| {entry.get('index')} | {entry.get('role')} (v{entry.get('version')}) | {entry.get('type')} "
                     f"| {event} | {entry.get('ts')} | {digest} |")
    lines += ["", "## 如何核验 / How to verify", "",
              "`stormwatch evidence verify BUNDLE.zip --public-key KEY` 离线检查每个哈希、包含证明和签名。",
              "`stormwatch evidence verify BUNDLE.zip --public-key KEY` checks every hash, inclusion proof and "
              "signature offline; `manifest.json` (`about`) says how to do it with any other tool.", ""]
    return "\n".join(lines)
