"""An OpenAI-compatible server for a checkpoint, with a page to talk to it.

    python -m gpt.serve lightning_logs/shakespeare_char_cpu/version_0/checkpoints/last.ckpt
    python -m gpt.serve CKPT --port 8000 --api_key secret --slots 16 --int8

    /                        a page: a chat or a prompt box, streaming, the sampling settings
    /health                  {"status": "ok", ...}
    /v1/models               the one model served
    /v1/completions          prompt -> text (OpenAI's shapes: max_tokens, temperature, top_p,
    /v1/chat/completions     messages -> reply        stop, seed, n, stream by server-sent events)

FastAPI and uvicorn serve; the engine (gpt/serve/engine.py) batches the requests in a thread of
its own. Listens on 127.0.0.1 unless --host says otherwise; with an API key, /v1 answers 401
without `Authorization: Bearer KEY`. A full queue answers 429; a body over --max_body 413; a
request that cannot be served 400 (404 for another model's name), each in OpenAI's error shape.
SIGTERM (or Ctrl-C) stops accepting, lets the requests in flight finish, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gpt.data.templates import Template
from gpt.model.models import GPT
from gpt.serve.engine import Engine, QueueFull
from gpt.serve.openai_api import (
    BadRequest,
    ChatRequest,
    CompletionRequest,
    chat_ids,
    completion,
    error_body,
    jobs_for,
    new_id,
    prompt_ids,
    usage,
)
from gpt.tokenizers import Tokenizer

PAGE = Path(__file__).with_name("page.html")


class Served:
    """What the routes share: the engine, the model's name and how a chat becomes a prompt."""

    def __init__(self, engine: Engine, name: str, template: Template | None, api_key: str | None, max_body: int):
        self.engine, self.name, self.template, self.api_key, self.max_body = engine, name, template, api_key, max_body
        self.model: GPT = engine.model
        self.tokenizer: Tokenizer = engine.tokenizer


def create_app(served: Served) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        served.engine.stop()  # after uvicorn has let the requests in flight finish

    app = FastAPI(title="gpt-lightning", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        routes = "/v1/models, /v1/completions, /v1/chat/completions"
        message = f"{request.method} {request.url.path}: {e.detail}; the API serves {routes}"
        return JSONResponse(error_body(message), status_code=e.status_code)  # OpenAI's shape, as every other error

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        page = PAGE.read_text(encoding="utf-8").replace("{{MODEL}}", html.escape(served.name))
        return page.replace("{{CHAT}}", "true" if served.template else "false")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        e = served.engine
        return {"status": "ok", "model": served.name, "active": len(e.active), "waiting": len(e.waiting)}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        if (refused := unauthorized(request, served)) is not None:
            return refused
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": 0, "owned_by": "local"}]}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await answer(request, served, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await answer(request, served, chat=True)

    return app


def unauthorized(request: Request, served: Served) -> JSONResponse | None:
    if served.api_key is None or request.headers.get("authorization") == f"Bearer {served.api_key}":
        return None
    message = "no valid API key: send Authorization: Bearer YOUR_KEY"
    return JSONResponse(error_body(message, code="invalid_api_key"), status_code=401)


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, refused past `limit` bytes (read no further) or when malformed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the request body is {int(declared):,} bytes; the limit is {limit:,}", status=413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(f"the request body is over the limit of {limit:,} bytes", status=413)
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(f"the body is not JSON: {e}") from None


def parse(kind: type, value: Any) -> Any:
    if not isinstance(value, dict):
        raise BadRequest(f'the body is a JSON {type(value).__name__}; send an object, e.g. {{"prompt": "..."}}')
    try:
        return kind.model_validate(value)
    except ValidationError as e:
        first = e.errors()[0]
        if first["loc"][:1] == ("prompt",):  # not pydantic's names of the union's branches (prompt.str, ...)
            raise BadRequest("prompt: give a string or a non-empty list of strings (token ids are not taken)", "prompt")
        where = ".".join(str(p) for p in first["loc"]) or None
        raise BadRequest(f"{where}: {first['msg']}" if where else first["msg"], where) from None


async def answer(request: Request, served: Served, chat: bool) -> Any:
    if (refused := unauthorized(request, served)) is not None:
        return refused
    try:
        body = parse(ChatRequest if chat else CompletionRequest, await read_json(request, served.max_body))
        if body.model not in (None, served.name):
            message = f"the model {body.model!r} is not served here; this server serves {served.name!r}"
            raise BadRequest(message, "model", status=404, code="model_not_found")
        return await run(request, served, body, chat)
    except BadRequest as e:
        return JSONResponse(error_body(str(e), e.param, e.code), status_code=e.status)
    except QueueFull as e:
        body = error_body(str(e), code="rate_limit_exceeded", kind="rate_limit_error")
        return JSONResponse(body, status_code=429, headers={"Retry-After": "1"})


async def run(request: Request, served: Served, body: Any, chat: bool) -> Any:
    """Queue the request's jobs; stream their text as it comes, or answer once all are done."""
    loop, events = asyncio.get_running_loop(), asyncio.Queue()

    def on_text(index: int):
        return lambda text, finish: loop.call_soon_threadsafe(events.put_nowait, (index, text, finish))

    template = served.template
    if chat:
        prompts = [chat_ids(served.tokenizer, template, body.messages)]
        ends = frozenset({served.tokenizer.special_tokens[template.stop_token]})
    else:
        prompts = [
            prompt_ids(served.tokenizer, p) for p in ([body.prompt] if isinstance(body.prompt, str) else body.prompt)
        ]
        ends = {served.tokenizer.eot_id} - {None}  # and a chat model's end of turn: it ends a text too
        ends = frozenset(ends | ({served.tokenizer.special_tokens[template.stop_token]} if template else set()))
    default = served.model.config.block_size if chat else 16
    jobs = []
    for k, ids in enumerate(prompts):
        make = lambda i, k=k: on_text(k * body.n + i)  # noqa: E731 - choice index across prompts
        jobs += jobs_for(body, ids, served.model, served.tokenizer, ends, make, default)
    if len(jobs) > served.engine.max_waiting:  # could never be queued: not a 429, which says try again
        raise BadRequest(
            f"the request asks for {len(jobs)} completions ({len(prompts)} prompts x n {body.n}); this server "
            f"queues at most {served.engine.max_waiting} (--queue): send fewer",
            "n",
        )
    served.engine.submit(jobs)
    rid, kind = new_id("chatcmpl" if chat else "cmpl"), "chat.completion" if chat else "text_completion"
    if body.stream:
        prompt_tokens = sum(len(ids) for ids in prompts) if body.include_usage else None
        chunks = stream(served, events, jobs, rid, kind + (".chunk" if chat else ""), chat, prompt_tokens)
        return StreamingResponse(chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    texts, reasons = [""] * len(jobs), [None] * len(jobs)
    check_at = loop.time() + 0.5
    try:
        while None in reasons:
            with contextlib.suppress(TimeoutError):
                index, text, finish = await asyncio.wait_for(events.get(), timeout=0.5)
                texts[index] += text
                reasons[index] = finish or reasons[index]
            if loop.time() >= check_at:  # twice a second, whether or not text comes: is the client still there?
                if await request.is_disconnected():
                    return Response(status_code=499)  # nginx's "client closed request": nobody reads it
                check_at = loop.time() + 0.5
    finally:
        for job in jobs:
            job.cancelled = True  # no-op for finished jobs; frees the slots of a client that left
    choices = [
        ({"message": {"role": "assistant", "content": t}} if chat else {"text": t, "logprobs": None})
        | {"index": i, "finish_reason": r}
        for i, (t, r) in enumerate(zip(texts, reasons))
    ]
    used = usage(sum(len(ids) for ids in prompts), sum(j.written for j in jobs))
    return completion(kind, rid, served.name, choices, used)


async def stream(
    served: Served, events: asyncio.Queue, jobs: list, rid: str, kind: str, chat: bool, prompt_tokens: int | None
):
    """Server-sent events: a chunk for each piece of text as it comes, then, when the request
    asked for it (stream_options.include_usage), a chunk with no choices and the usage, then
    `data: [DONE]`."""

    def chunk(index: int, text: str | None, finish: str | None, first: bool = False) -> str:
        if chat:
            delta = ({"role": "assistant"} if first else {}) | ({"content": text} if text else {})
            choice = {"index": index, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
        return f"data: {json.dumps(completion(kind, rid, served.name, [choice], None))}\n\n"

    done = 0
    try:
        if chat:
            for i in range(len(jobs)):
                yield chunk(i, "", None, first=True)
        while done < len(jobs):
            index, text, finish = await events.get()
            if text:
                yield chunk(index, text, None)
            if finish is not None:
                done += 1
                yield chunk(index, None, finish)
        if prompt_tokens is not None:
            used = usage(prompt_tokens, sum(job.written for job in jobs))
            yield f"data: {json.dumps(completion(kind, rid, served.name, [], used))}\n\n"
        yield "data: [DONE]\n\n"
    finally:  # the client left (Starlette cancels this generator): free its slots
        for job in jobs:
            job.cancelled = True
