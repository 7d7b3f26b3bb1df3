"""Prompt templates, version 1. Frozen once models are trained on it: change a template by adding v2.py
beside this file (and registering it in render.py), never by editing this one — golden files pin it.

Post (percentile counts)::

    post: article
    author: Electrical Engineer at Voltgrid | company: Voltgrid | industry: Energy
    stats: <view_percentile>71</view_percentile> <like_percentile>40</like_percentile> ...
    topic: #renewableenergy
    title: What grid storage means for utilities | domain: gridweekly.com
    text: New article: ...

Member::

    member: Electrical Engineer at Voltgrid
    role: Electrical Engineer
    ...
    engaged posts, oldest first:
    - article #renewableenergy by Electrical Engineer at Voltgrid: What grid storage means ...
"""

from __future__ import annotations

from training.prompts.config import PromptConfig
from training.prompts.features import MemberFeatures, PostFeatures
from training.prompts.template import PromptTemplate
from training.prompts.text import clean_text
from training.prompts.tokens import STATS, percentile_tag

VERSION = "v1"
FIELD_MAX_CHARS = 200  # headline, title, company, …: longer is garbage, not information
LIST_MAX_ITEMS = 20  # skills/education/work history entries kept (in the feature's order)
HISTORY_TEXT_CHARS = 80  # one history item's snippet: ≈ 16 tokens; an item is ≈ 25 tokens in all
RAW_NAMES: dict[str, str] = {  # stat → raw count field, for counts="raw"
    "view": "views",
    "like": "likes",
    "comment": "comments",
    "share": "shares",
    "follower": "followers",
}


def _field(value: str | None) -> str | None:
    return clean_text(value, max_chars=FIELD_MAX_CHARS)


def _contains(haystack: str | None, needle: str | None) -> bool:
    return bool(haystack and needle and needle.lower() in haystack.lower())


def _stats(post: PostFeatures, counts: str) -> str | None:
    """Engagement stats; a missing stat (None) is left out, and the line too when all are missing."""
    parts = []
    for stat in STATS:
        if counts == "raw":
            value = getattr(post, RAW_NAMES[stat])
            if value is not None:
                parts.append(f"{RAW_NAMES[stat]}:{value}")
        else:
            value = getattr(post, f"{stat}_percentile")
            if value is not None:
                parts.append(percentile_tag(stat, value))
    return " ".join(parts) or None


def _author(post: PostFeatures) -> str | None:
    """Author line. Our data has no names (members are ids), so the headline stands in for one; role and
    company are only repeated when the headline does not already say them."""
    headline = _field(post.author_headline)
    role, company, industry = (
        _field(post.author_current_role),
        _field(post.author_company),
        _field(post.author_industry),
    )
    parts = [f"author: {headline}"] if headline else []
    if role and not _contains(headline, role):
        parts.append(f"role: {role}")
    if company and not _contains(headline, company):
        parts.append(f"company: {company}")
    if industry:
        parts.append(f"industry: {industry}")
    return " | ".join(parts) or None


def post_head(post: PostFeatures, cfg: PromptConfig) -> str:
    fmt = _field(post.format)
    lines = [f"post: {fmt}" if fmt else "post"]
    author, stats = _author(post), _stats(post, cfg.counts)
    if author:
        lines.append(author)
    if stats:
        lines.append(f"stats: {stats}")
    topic = _field(post.topic)
    if topic:
        lines.append(f"topic: #{topic}")
    title, domain = _field(post.article_title), _field(post.article_domain)
    article = [p for p in (f"title: {title}" if title else "", f"domain: {domain}" if domain else "") if p]
    if article:
        lines.append(" | ".join(article))
    return "\n".join(lines)


def post_text(text: str) -> str:
    return f"text: {text}"


def history_item(post: PostFeatures) -> str:
    """One engaged post on one line: format, topic, author headline, then the article title or the start
    of the text. No stats: the member side describes taste, not what was popular."""
    head = _field(post.format) or "post"
    topic = _field(post.topic)
    if topic:
        head += f" #{topic}"
    author = _field(post.author_headline)
    if author:
        head += f" by {author}"
    source = clean_text(post.article_title) or clean_text(post.text)
    snippet = clean_text(source, max_chars=HISTORY_TEXT_CHARS)
    return f"{head}: {snippet}" if snippet else head


def member_profile(member: MemberFeatures) -> str:
    """Profile lines in the order of importance for retrieval (headline first): a token budget that is
    too small for the profile itself cuts it from the end. An empty profile renders as two lines,
    "member" and "profile: empty"."""
    headline = _field(member.headline)
    lines = [f"member: {headline}" if headline else "member"]
    role, industry = _field(member.current_role), _field(member.industry)
    if role:
        lines.append(f"role: {role}")
    if industry:
        lines.append(f"industry: {industry}")
    for label, values, joiner in (
        ("experience", member.work_history, "; "),
        ("education", member.education, "; "),
        ("skills", member.skills, ", "),
    ):
        kept = [v for v in (_field(x) for x in list(values or [])[:LIST_MAX_ITEMS]) if v]
        if kept:
            lines.append(f"{label}: {joiner.join(kept)}")
    if len(lines) == 1 and not headline:
        lines.append("profile: empty")
    return "\n".join(lines)


TEMPLATE = PromptTemplate(
    version=VERSION,
    post_head=post_head,
    post_text=post_text,
    history_item=history_item,
    member_profile=member_profile,
    history_header="engaged posts, oldest first:",
    history_joiner="\n- ",
    no_history="engaged posts: none",
)
