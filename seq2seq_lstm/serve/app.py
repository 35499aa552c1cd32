"""The ASGI app of `s2s serve`: OpenNMT-py's REST API and a native one over served models.

    app = create_app(load_models(["runs/ding"], Limits()))   # then: uvicorn.run(app, ...)

Routes: ``POST /translator/translate``, ``GET /translator/models``, ``GET /health`` (also
``/translator/health``, where OpenNMT-py has it), ``POST /v1/translate``, ``POST /v1/suggest``,
``GET /v1/models``, and FastAPI's ``/openapi.json`` and ``/docs``. Every error is a JSON body
``{"status": "error", "error": "...", "field": "..."}`` with a 4xx/5xx status (docs/serving.md).
Decoding happens on each model's worker thread (:mod:`.batcher`); the event loop only parses,
queues and waits, so a slow batch never blocks other requests from being refused or queued.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..decoding.options import SearchOptions
from ..errors import UserError
from .batcher import QueueFull, SuggestJob, TranslateJob
from .limits import Limits
from .models import ServedModel
from .schemas import (
    ErrorBody,
    Health,
    OnmtInput,
    OnmtOutput,
    SuggestRequest,
    SuggestResponse,
    TranslateRequest,
    TranslateResponse,
)

logger = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/health", "/translator/health"})  # answered without an API key (load balancers)


class ApiError(HTTPException):
    """A request refused with ``status``; ``field`` names the part of the body at fault. An
    HTTPException, so that FastAPI lets it through when the body reader raises it."""

    def __init__(self, status: int, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(status, message, headers)
        self.status, self.message, self.field = status, message, field


class ClientGone(Exception):
    """The client hung up while its request waited; nobody reads the answer."""


def error_response(status: int, message: str, field: str | None = None, headers: dict | None = None):
    body = ErrorBody(error=message, field=field).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(
    models: Sequence[ServedModel], limits: Limits, *, api_key: bytes | None = None, report_align: bool = False
) -> FastAPI:
    """The app over ``models`` (their workers start and stop with it: stopping finishes queued work)."""
    if not models:
        raise ValueError("a server needs at least one model")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for m in models:
            m.worker.start()
        yield
        for m in models:  # uvicorn has drained the connections; let the workers finish, then end
            await asyncio.to_thread(m.worker.stop, limits.timeout_s)

    app = FastAPI(title="seq2seq-lstm", lifespan=lifespan, responses={422: {"model": ErrorBody}})
    app.state.models, app.state.limits = list(models), limits
    _add_error_handlers(app)
    _add_onmt_routes(app, report_align)
    _add_native_routes(app)
    app.add_middleware(GuardMiddleware, max_body=limits.max_body_bytes, api_key=api_key)
    return app


# ------------------------------------------------------------------------------------------ routes


def _add_onmt_routes(app: FastAPI, report_align: bool) -> None:
    """OpenNMT-py's routes, and /health."""
    models: list[ServedModel] = app.state.models
    limits: Limits = app.state.limits

    @app.get("/health", response_model=Health)
    @app.get("/translator/health", response_model=Health, include_in_schema=False)
    async def health() -> dict:
        """OpenNMT-py's ``{"status": "ok"}``, with each model's queue and counts."""
        return {"status": "ok", "models": [{"model_id": m.model_id, **m.worker.stats()} for m in models]}

    @app.get("/translator/models")
    @app.get("/v1/models", include_in_schema=False)
    async def list_models() -> list[dict[str, Any]]:
        return [m.describe() for m in models]

    @app.post(
        "/translator/translate", response_model=list[list[OnmtOutput]], response_model_exclude_none=True
    )
    async def onmt_translate(
        request: Request, inputs: Annotated[list[OnmtInput], Body(min_length=1)]
    ) -> list[list[dict]]:
        """OpenNMT-py's translate: the first input's ``id`` picks the model."""
        for i, item in enumerate(inputs):
            if item.id != inputs[0].id:
                raise ApiError(422, "every input of a request must name the same model id", f"[{i}].id")
        model = _translation_model(models, inputs[0].id, "[0].id")
        lines = [item.src for item in inputs]
        _check_size(lines, limits, "src")
        job = TranslateJob(lines, None, model.translator.options, attention=report_align)
        results = await _wait(request, model, job, limits)
        n_best = model.translator.options.n_best
        pairs = list(zip(lines, results, strict=True))
        return [[_onmt_output(line, hyps, k, n_best, report_align) for line, hyps in pairs]
                for k in range(n_best)]  # fmt: skip


def _add_native_routes(app: FastAPI) -> None:
    models: list[ServedModel] = app.state.models
    limits: Limits = app.state.limits

    @app.post("/v1/translate", response_model=TranslateResponse, response_model_exclude_none=True)
    async def translate(request: Request, body: TranslateRequest) -> dict:
        model = _translation_model(models, body.model, "model")
        _check_size(body.text, limits, "text")
        options = _search_options(model, body, limits)
        job = TranslateJob(body.text, _prefixes(body), options, attention=body.alignments)
        results = await _wait(request, model, job, limits)
        return {
            "model": model.model_id,
            "translations": [[h.text for h in hyps] for hyps in results],
            "scores": [[h.score for h in hyps] for hyps in results],
            "alignments": [[h.alignment for h in hyps] for hyps in results] if body.alignments else None,
        }

    @app.post("/v1/suggest", response_model=SuggestResponse)
    async def suggest(request: Request, body: SuggestRequest) -> dict:
        model = _suggest_model(models, body.model)
        _check_size([body.text, body.source or ""], limits, "text")
        if model.task == "translation" and body.source is None:
            raise ApiError(422, "a translation model suggests for a source sentence: give source", "source")
        words = await _wait(request, model, SuggestJob(body.text, body.k, body.source), limits)
        return {"model": model.model_id, "text": body.text,
                "suggestions": [{"word": w.word, "prob": w.prob} for w in words]}  # fmt: skip


def _onmt_output(src: str, hyps: list, k: int, n_best: int, report_align: bool) -> dict:
    """OpenNMT-py's entry for the k-th hypothesis of one input (an empty input has one, ``""``)."""
    h = hyps[min(k, len(hyps) - 1)]
    out: dict[str, Any] = {"src": src, "tgt": h.text, "n_best": n_best, "pred_score": h.score}
    if report_align and h.alignment:
        pairs = sorted((s, t) for t, s in enumerate(h.alignment))  # by source, then target: as OpenNMT-py
        out["align"] = [" ".join(f"{s}-{t}" for s, t in pairs)]
        if h.attention is not None:  # (T, S): the attended weight's share of its row, per target piece
            rows = h.attention[: len(h.alignment)]
            shares = (rows.max(dim=1).values / rows.sum(dim=1)).tolist()
            out["align_score"] = [" ".join(f"{t}-{s:.5f}" for t, s in enumerate(shares))]
    return out


def _translation_model(models: list[ServedModel], model_id: int | None, field: str) -> ServedModel:
    if model_id is None:
        found = next((m for m in models if m.translator is not None), None)
        if found is None:
            raise ApiError(404, "no translation model is served (only language models)", field)
        return found
    model = _model(models, model_id, field)
    if model.translator is None:
        raise ApiError(
            422, f"model {model_id} is a language model: it suggests, it does not translate", field
        )
    return model


def _suggest_model(models: list[ServedModel], model_id: int | None) -> ServedModel:
    if model_id is None:
        return next((m for m in models if m.task == "lm"), models[0])
    return _model(models, model_id, "model")


def _model(models: list[ServedModel], model_id: int, field: str) -> ServedModel:
    if not 0 <= model_id < len(models):
        raise ApiError(404, f"No such model '{model_id}'", field)  # OpenNMT-py's words
    return models[model_id]


def _check_size(texts: Sequence[str], limits: Limits, field: str) -> None:
    if len(texts) > limits.max_sentences:
        raise ApiError(413, f"{len(texts)} sentences; at most {limits.max_sentences} per request", field)
    chars = sum(len(t) for t in texts)
    if chars > limits.max_chars:
        raise ApiError(413, f"{chars} characters; at most {limits.max_chars} per request", field)


def _search_options(model: ServedModel, body: TranslateRequest, limits: Limits) -> SearchOptions:
    overrides = body.overrides()
    base = model.translator.options
    beam = overrides.get("beam_size", base.beam_size)
    if beam > limits.max_beam:
        raise ApiError(
            422, f"beam_size must be at most {limits.max_beam} on this server; got {beam}", "beam_size"
        )
    if "beam_size" in overrides and "n_best" not in overrides:
        overrides["n_best"] = min(base.n_best, beam)  # a narrower beam than the server's n-best
    try:
        return SearchOptions.from_generation(model.translator.generation, **overrides)
    except UserError as e:
        raise ApiError(422, str(e), str(e).split(" ", 1)[0]) from None


def _prefixes(body: TranslateRequest) -> list[str | None] | None:
    if body.prefix is None or isinstance(body.prefix, str):
        return None if body.prefix is None else [body.prefix] * len(body.text)
    if len(body.prefix) != len(body.text):
        raise ApiError(422, f"prefix needs one entry per text ({len(body.text)}); got {len(body.prefix)}",
                       "prefix")  # fmt: skip
    return list(body.prefix)


# -------------------------------------------------------------------------------------- waiting


async def _wait(request: Request, model: ServedModel, job: TranslateJob | SuggestJob, limits: Limits) -> Any:
    """Queue ``job`` on the model's worker and wait for its answer, the client hanging up, or the
    timeout, whichever comes first; the last two cancel the job if it has not started."""
    try:
        future = model.worker.submit(job)
    except QueueFull as e:
        raise ApiError(503, f"model {model.model_id} is busy: {e}", None,
                       {"Retry-After": str(limits.retry_after_s)}) from None  # fmt: skip
    answer = asyncio.wrap_future(future)
    gone = asyncio.ensure_future(_hung_up(request))
    try:
        done, _ = await asyncio.wait({answer, gone}, timeout=limits.timeout_s, return_when="FIRST_COMPLETED")
    finally:
        gone.cancel()
    if answer in done:
        try:
            return answer.result()
        except UserError as e:
            raise ApiError(422, str(e)) from None
    _cancel(future, answer)
    if gone in done:
        raise ClientGone
    raise ApiError(504, f"no answer within {limits.timeout_s:g} s; the request was dropped")


def _cancel(future: Future, answer: asyncio.Future) -> None:
    future.cancel()  # a job already decoding runs to its end; its answer is dropped
    answer.cancel()


async def _hung_up(request: Request) -> None:
    """Returns when the client hangs up. The body has been read, so the ASGI server's next message
    is ``http.disconnect``, sent when the connection closes (or the response is complete, by which
    time nobody waits here). Waiting for it costs nothing per request; polling
    ``request.is_disconnected()`` did, as each poll cancels a scope (anyio formats the task for it):
    with 32 clients waiting, polls every 50 ms took a large share of the event loop's time, holding
    the GIL the decoding thread needs between its torch calls."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.05)  # not expected once the body is read; never spin on it


# ---------------------------------------------------------------------------------------- errors


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return error_response(e.status, e.message, e.field, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):  # unknown route, wrong method, ...
        return error_response(e.status_code, str(e.detail), None, e.headers)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, e: ClientGone):
        return error_response(499, "client closed the request")  # nginx's code; nobody reads it

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0]
        field = _field(first.get("loc", ()))
        if first.get("type") == "json_invalid":
            return error_response(400, f"the body is not valid JSON: {first.get('msg')}", "body")
        return error_response(422, f"{field}: {first.get('msg')}", field)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):
        logger.error("request failed", exc_info=e)
        return error_response(500, "internal error (see the server log)")


def _field(loc: Sequence[Any]) -> str:
    """pydantic's error location as a path: ("body", 0, "src") -> "[0].src", ("body", "k") -> "k"."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or "body"


# ------------------------------------------------------------------------------------ middleware


class GuardMiddleware:
    """Refuses before any route runs: a body over ``max_body`` (413; by its Content-Length at once,
    else as soon as the bytes read pass it), and without the API key (401), when one is set. A POST
    body is read as JSON whatever its Content-Type says (OpenNMT-py's clients often send none)."""

    def __init__(self, app, max_body: int, api_key: bytes | None = None) -> None:
        self.app, self.max_body, self.api_key = app, max_body, api_key

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and scope["path"] not in OPEN_PATHS and not self._authorized(headers):
            response = error_response(401, "missing or wrong API key (Authorization: Bearer KEY)",
                                      headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
            return await response(scope, receive, send)
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body:
            too_big = f"the body is over the {self.max_body:,}-byte limit"
            return await error_response(413, too_big, "body")(scope, receive, send)
        if scope["method"] == "POST":  # JSON whatever the Content-Type, as OpenNMT-py reads (force=True)
            headers[b"content-type"] = b"application/json"
            scope = {**scope, "headers": list(headers.items())}
        return await self.app(scope, self._counting(receive), send)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(b"Bearer ")
        return hmac.compare_digest(given, self.api_key)

    def _counting(self, receive):
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:  # a chunked body has no Content-Length to refuse it by
                raise ApiError(413, f"the body is over the {self.max_body:,}-byte limit", "body")
            return message

        return counted
