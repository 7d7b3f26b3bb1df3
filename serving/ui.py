"""The inspection page (``GET /ui``): pick a member, see the profile, the engaged history and the ranked feed
with scores, task probabilities, "why" and per-stage timings.

One self-contained HTML file (``serving/static/ui.html``: vanilla JS and inline CSS, because the service runs
on offline machines — no CDN, no web fonts) that calls the public JSON API only (``GET /v1/members``,
``GET /v1/members/{id}``, ``POST /v1/feed``), so it shows exactly what a client would get. The server fills
in one JSON blob (device types, task names, k limits) from the same constants the API validates with, so the
page's choices cannot drift from the contract.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from pipelines.schemas import DEVICE_TYPES
from serving.schemas import FeedRequest, TaskProbabilities

PAGE = "ui.html"
CONFIG_PLACEHOLDER = "__UI_CONFIG__"
MEMBER_LIST_LIMIT = 200  # the picker's list; any other member id can be typed in
# The page may only talk to the service itself: a stray external URL would hang on an offline machine, and the
# API data it shows is rendered as text (never as HTML), which this policy backs up.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["ui"])


def page_config() -> dict[str, object]:
    """What the page needs to know about the contract (injected as JSON into ``#ui-config``)."""
    k = FeedRequest.model_fields["k"]
    k_max = next(m.le for m in k.metadata if getattr(m, "le", None) is not None)
    return {
        "device_types": list(DEVICE_TYPES),
        "tasks": list(TaskProbabilities.model_fields),
        "k_default": k.default,
        "k_max": k_max,
        "member_list_limit": MEMBER_LIST_LIMIT,
    }


@cache
def page_html() -> str:
    """The page with its config filled in; read from the package once (it ships as package data)."""
    template = resources.files("serving").joinpath("static", PAGE).read_text(encoding="utf-8")
    if template.count(CONFIG_PLACEHOLDER) != 1:
        raise RuntimeError(f"serving/static/{PAGE} must contain {CONFIG_PLACEHOLDER} exactly once")
    # "</" would end the <script> element early; JSON allows the escaped form.
    blob = json.dumps(page_config()).replace("</", "<\\/")
    return template.replace(CONFIG_PLACEHOLDER, blob)


@router.get("/ui", response_class=HTMLResponse, include_in_schema=False)
def inspection_page() -> HTMLResponse:
    """The inspection page (not part of the JSON API, so it stays out of the OpenAPI document)."""
    return HTMLResponse(
        page_html(),
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )
