"""Schemathesis against the service's own OpenAPI document, in process (ASGI): no generated request — valid
or not — gets a 5xx. Malformed input must be a 422 naming the field, a dependency down a degraded 200."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from feed.config import FeedPaths

EXAMPLES_PER_OPERATION = 8  # positive and negative each; the bench (`feed bench serving`) runs 50


@pytest.fixture(scope="module")
def feed_schema(served_home: FeedPaths) -> Any:
    import schemathesis

    from serving.app import create_app
    from serving.settings import ServingSettings

    app = create_app(ServingSettings(home=served_home.home, log_impressions=False))
    return schemathesis.openapi.from_asgi("/openapi.json", app)  # the ASGI client runs the app's lifespan


@pytest.mark.integration
@pytest.mark.slow
def test_generated_requests_never_get_a_server_error(feed_schema: Any) -> None:
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    operations = [result.ok() for result in feed_schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/feed", "GET /v1/members/{member_id}", "GET /readyz"} <= labels
    for operation in operations:
        inputs = [operation.path_parameters, operation.query, operation.body]
        modes = [GenerationMode.POSITIVE]
        if any(len(i) for i in inputs):  # nothing to make invalid on /healthz, /readyz, /metrics
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                case.call_and_validate(checks=[not_a_server_error])

            check()


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("text/plain", b"member_id=5", 422),  # FastAPI hands the validator the raw bytes as the input
        ("application/x-www-form-urlencoded", b"member_id=5&k=3", 422),
        ("application/json", b'{"member_id": 5, "exclude_post_ids": [99999999999999999999999]}', 422),
        ("application/json", b"\xff\xfe{", 400),  # not UTF-8: Starlette's "error parsing the body"
    ],
)
def test_bodies_schemathesis_found_are_rejected_with_4xx(
    tmp_path: Path, content_type: str, body: bytes, status: int
) -> None:
    """Regressions from `schemathesis run` against the live service: an undeclared content type (ST102) and
    an exclude id beyond int64 (ST101) each answered 503. Validation runs before the service is touched, so
    no lifespan (no models, no store) is needed to check it."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import ServingSettings

    client = TestClient(create_app(ServingSettings(home=tmp_path)), raise_server_exceptions=False)
    response = client.post("/v1/feed", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert response.json()["detail"]
