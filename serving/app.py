"""The feed service's HTTP app (FastAPI): ``create_app(settings)``; ``feed serve`` runs it under uvicorn.

Resources (feature store, encoder, Milvus client, GR, impression logger) are loaded once in the lifespan and
closed at shutdown. Every endpoint answers: malformed input → 422 naming the field (pydantic), a dependency
down → a degraded feed with its fallbacks named, an unexpected error → 503 with the reason (never a bare 500).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from serving.metrics import ServiceMetrics
from serving.schemas import FeedRequest, FeedResponse, Health, MemberList, MemberView
from serving.settings import ServingSettings

log = logging.getLogger(__name__)

MEMBER_ID = Path(gt=0, le=2**62, description="a member id")


def create_app(settings: ServingSettings | None = None) -> FastAPI:
    settings = settings or ServingSettings()
    metrics = ServiceMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from serving.pipeline import FeedService

        app.state.service = FeedService(settings, metrics)
        try:
            yield
        finally:
            app.state.service.close()

    app = FastAPI(
        title="feed",
        version="1",
        summary="Feed service: Feast online features → Milvus retrieval → GR ranking",
        lifespan=lifespan,
    )
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.requests.labels(outcome="rejected").inc()
        return JSONResponse(status_code=422, content={"detail": _jsonable(exc.errors())})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        metrics.requests.labels(outcome="error").inc()
        return JSONResponse(
            status_code=503, content={"detail": f"service error: {type(exc).__name__}: {exc}"}
        )

    @app.post("/v1/feed", response_model=FeedResponse, tags=["feed"])
    def feed(body: FeedRequest, request: Request) -> FeedResponse:
        """A ranked feed for one member: the top ``k`` posts with score, task probabilities and a why."""
        return request.app.state.service.feed(body)

    @app.get("/v1/members", response_model=MemberList, tags=["inspect"])
    def members(request: Request, limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> MemberList:
        """Member ids to inspect (lowest first)."""
        return MemberList(member_ids=request.app.state.service.member_ids(limit))

    @app.get("/v1/members/{member_id}", response_model=MemberView, tags=["inspect"])
    def member(request: Request, member_id: Annotated[int, MEMBER_ID]) -> MemberView:
        """A member's online profile and engaged history, as the feed sees them."""
        return request.app.state.service.member_view(member_id)

    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz() -> Health:
        """The process is up."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["ops"], responses={503: {"model": Health}})
    def readyz(request: Request) -> Response:
        """Dependencies (feature store, Milvus, models): 200 when all are ok, 503 naming the ones that are
        not (the service still answers feeds, degraded)."""
        checks = request.app.state.service.ready()
        ok = all(v == "ok" for v in checks.values())
        body = Health(status="ready" if ok else "degraded", checks=checks)
        return JSONResponse(status_code=200 if ok else 503, content=body.model_dump())

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus text format."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    from serving import ui  # the inspection page

    app.include_router(ui.router)
    return app


def _jsonable(errors: list) -> list:
    """Validation errors with their context made JSON-safe (pydantic may put exceptions in ``ctx``)."""
    out = []
    for err in errors:
        err = dict(err)
        if "ctx" in err:
            err["ctx"] = {k: str(v) for k, v in err["ctx"].items()}
        if isinstance(err.get("input"), bytes | bytearray):  # a non-JSON body reaches the validator as bytes
            err["input"] = bytes(err["input"][:1000]).decode("utf-8", errors="replace")
        err.pop("url", None)
        out.append(err)
    return out
