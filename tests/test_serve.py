"""gpt/serve: the batching engine, the OpenAI-compatible API and its errors (in this process,
through Starlette's test client), and the server as programs meet it: a live process, the
official `openai` client, streams, disconnects, a full queue and SIGTERM."""

import copy
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

try:  # the HTTP client the openai package brings: httpx2, or httpx before it
    import httpx2 as httpx
except ImportError:
    import httpx
from fastapi.testclient import TestClient

from gpt.data.templates import template
from gpt.interop.checkpoint import load_chat_model, load_model
from gpt.model.generation import SamplingSettings, complete
from gpt.model.quantize import int8_weights
from gpt.serve.engine import Engine, Job, QueueFull, wait_idle
from gpt.serve.server import Served, create_app
from helpers import LINES_TEXT, ROOT, TINY_MODEL, main_here, predict, write_jsonl

RUN = [*TINY_MODEL, *"--trainer.enable_progress_bar false --trainer.enable_model_summary false".split()]
RUN += "--model.block_size 64 --model.val_sample_tokens 0 --trainer.max_steps 6 --trainer.val_check_interval 6".split()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny char GPT pretrained here, and the same tuned for a few steps with the chat template."""
    folder = tmp_path_factory.mktemp("serve")
    (folder / "corpus.txt").write_text(LINES_TEXT + "#<>|_\n")
    assert main_here("fit", *RUN, "--data.corpus", "corpus.txt", cwd=folder).returncode == 0
    pretrained = folder / "lightning_logs/version_0/checkpoints/last.ckpt"
    chats = [{"messages": [{"role": "user", "content": "Speak."}, {"role": "assistant", "content": "Speak, speak."}]}]
    data = write_jsonl(folder / "chats.jsonl", chats * 20)
    sft = ["--model.init_from", str(pretrained), "--data.instructions.path", str(data), "--data.batch_size", "4"]
    assert main_here("fit", *RUN, *sft, cwd=folder).returncode == 0
    return pretrained, folder / "lightning_logs/version_1/checkpoints/last.ckpt"


def served(ckpt, slots=4, queue=8, api_key=None, max_body=10_000) -> Served:
    model, tokenizer = load_model(ckpt)
    name = template(load_chat_model(ckpt)[2]) if "version_1" in str(ckpt) else None
    return Served(Engine(model, tokenizer, slots, queue), "tiny", name, api_key, max_body)


def collect(engine: Engine, jobs_settings: list[dict], tokenizer) -> list[tuple[str, str]]:
    results = [["", None] for _ in jobs_settings]

    def on_text(i):
        def add(text, finish):
            results[i][0] += text
            results[i][1] = finish

        return add

    jobs = [Job(on_text=on_text(i), **s) for i, s in enumerate(jobs_settings)]
    engine.submit(jobs)
    assert wait_idle(engine, 60)
    return [tuple(r) for r in results]


def test_a_greedy_request_writes_what_predict_writes_alone_or_in_a_batch(checkpoints):
    model, tokenizer = load_model(checkpoints[0])
    prompts = ["First Citizen:\n", "All:\nSpeak", "MENENIUS:\nWhat work's", "Resolved"]
    settings = SamplingSettings(max_new_tokens=20, temperature=0, stream=False)
    expected = [r.text for r in complete(model, tokenizer, prompts, settings)]
    engine = Engine(model, tokenizer, slots=3, max_waiting=8)  # four requests, three slots: one waits for a free one
    jobs = [dict(ids=tokenizer.encode(p), max_tokens=20, temperature=0.0) for p in prompts]
    assert [text for text, _ in collect(engine, jobs, tokenizer)] == expected
    alone = collect(Engine(model, tokenizer, slots=1), jobs[1:2], tokenizer)
    assert alone[0][0] == expected[1]
    seeded = SamplingSettings(max_new_tokens=20, temperature=0.9, seed=5, stream=False)
    (sample,) = complete(model, tokenizer, prompts[:1], seeded, torch.Generator().manual_seed(5))
    assert (
        collect(engine, [dict(ids=tokenizer.encode(prompts[0]), max_tokens=20, seed=5, temperature=0.9)], tokenizer)[0][
            0
        ]
        == sample.text
    )  # the same seed and settings: the same text as predict's


def test_stop_strings_cancellation_and_a_full_queue(checkpoints):
    model, tokenizer = load_model(checkpoints[0])
    engine = Engine(model, tokenizer, slots=2, max_waiting=2)
    greedy = dict(ids=tokenizer.encode("All:\n"), max_tokens=30, temperature=0.0)
    ((full, _),) = collect(engine, [greedy], tokenizer)
    stop = full[6:8]
    ((text, finish),) = collect(engine, [greedy | {"stop": (stop,)}], tokenizer)
    assert text == full[: full.index(stop)] and finish == "stop"
    job = Job(ids=tokenizer.encode("All:"), max_tokens=60, on_text=lambda t, f: time.sleep(0.01))
    engine.submit([job])
    time.sleep(0.05)
    job.cancelled = True  # the client left: its slot is free at the next step
    assert wait_idle(engine, 10) and not engine.active
    with pytest.raises(QueueFull, match="requests are waiting for one of 2 slots"):
        engine.submit([Job(ids=[1], max_tokens=1, on_text=lambda t, f: None) for _ in range(3)])


@pytest.fixture
def client(checkpoints):
    with TestClient(create_app(served(checkpoints[1]))) as c:
        yield c


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        ("/v1/completions", b"{not json", 400, "the body is not JSON"),
        ("/v1/completions", {"prompt": 5}, 400, "prompt"),
        ("/v1/completions", {"prompt": "All", "max_tokens": "many"}, 400, "max_tokens"),
        (
            "/v1/completions",
            {"prompt": "All", "max_tokens": 0},
            400,
            "max_tokens: Input should be greater than or equal to 1",
        ),
        ("/v1/completions", {"prompt": "All", "max_tokens": 500}, 400, "passes the model's context of 64 tokens"),
        (
            "/v1/completions",
            {"prompt": "All", "temperature": -0.5},
            400,
            "temperature: Input should be greater than or equal to 0",
        ),
        ("/v1/completions", {"prompt": "All", "model": "gpt-5"}, 404, "the model 'gpt-5' is not served here"),
        (
            "/v1/completions",
            {"prompt": "All\u00e9"},
            400,
            "character 'é' at position 3 is not in the tokenizer's vocabulary",
        ),
        ("/v1/completions", {"prompt": "All", "n": 99}, 400, "n: Input should be less than or equal to 16"),
        ("/v1/completions", {"prompt": "All", "logprobs": 3}, 400, "logprobs are not supported"),
        ("/v1/chat/completions", {"messages": []}, 400, "messages: List should have at least 1 item"),
        ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages.0.role"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "<|end|>"}]},
            400,
            "a token of the model's chat",
        ),
        ("/v1/completions", {"prompt": "x" * 20_000}, 413, "the request body is 20,"),
        ("/v1/completions", {"prompt": "All", "seed": 2**64}, 400, "seed: Input should be less than or equal to"),
        ("/v1/completions", {"prompt": "All", "max_tokens": True}, 400, "max_tokens: Input should be a valid integer"),
        ("/v1/completions", {"prompt": []}, 400, "prompt: give a string or a non-empty list of strings"),
        ("/v1/completions", {"prompt": [1, 2]}, 400, "(token ids are not taken)"),
        ("/v1/completions", b"[1, 2]", 400, "the body is a JSON list; send an object"),
        ("/v1/completions", {"prompt": ["All", "Speak"], "n": 5}, 400, "queues at most 8 (--queue): send fewer"),
        ("/v1/nothing", {"prompt": "All"}, 404, "POST /v1/nothing: Not Found; the API serves /v1/models"),
    ],
)
def test_bad_input_is_a_4xx_in_openais_shape_and_the_server_goes_on(client, path, body, status, message):
    sent = client.post(path, content=body) if isinstance(body, bytes) else client.post(path, json=body)
    assert sent.status_code == status, sent.text
    error = sent.json()["error"]
    assert message in error["message"] and error["type"] in ("invalid_request_error",)
    ok = client.post("/v1/completions", json={"prompt": "All", "max_tokens": 3, "temperature": 0})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] >= 1


def test_chat_content_as_a_list_of_text_parts_as_openai_takes_it(client):
    parts = [{"type": "text", "text": "Spe"}, {"type": "text", "text": "ak."}]
    reply = {}
    for content in ("Speak.", parts):
        body = {"messages": [{"role": "user", "content": content}], "max_tokens": 8, "temperature": 0}
        sent = client.post("/v1/chat/completions", json=body)
        assert sent.status_code == 200, sent.text
        reply[str(content)] = sent.json()["choices"][0]["message"]["content"]
    assert len(set(reply.values())) == 1  # the same prompt, however it was sent


def test_an_api_key_guards_the_api_not_the_page(checkpoints):
    with TestClient(create_app(served(checkpoints[1], api_key="sesame"))) as c:
        refused = c.post("/v1/completions", json={"prompt": "All"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        assert c.get("/v1/models").status_code == 401
        good = c.post(
            "/v1/completions", json={"prompt": "All", "max_tokens": 2}, headers={"Authorization": "Bearer sesame"}
        )
        assert good.status_code == 200
        page = c.get("/")
        assert page.status_code == 200 and "const CAN_CHAT = true;" in page.text
        assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from the internet


def test_a_full_queue_answers_429(checkpoints):
    s = served(checkpoints[1], slots=1, queue=1)
    with TestClient(create_app(s)) as c:
        for _ in range(2):  # one decodes in the only slot, one waits in the only place in the queue
            s.engine.submit([Job(ids=[1], max_tokens=60, on_text=lambda t, f: time.sleep(0.02))])
            time.sleep(0.1)
        full = c.post("/v1/completions", json={"prompt": "All"})
        assert full.status_code == 429 and full.headers["retry-after"] == "1"
        assert full.json()["error"]["code"] == "rate_limit_exceeded"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live(checkpoints):
    """The server in a process of its own on 127.0.0.1, stopped by its pid."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gpt.serve",
        str(checkpoints[1]),
        "--port",
        str(port),
        "--slots",
        "4",
        "--name",
        "tiny",
        "--queue",
        "256",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for _ in range(300):  # bounded: 30 s
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    yield process, f"http://127.0.0.1:{port}"
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


@pytest.mark.slow
def test_the_openai_client_completes_and_chats_streaming_or_not(live):
    from openai import OpenAI

    _, url = live
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    text = client.completions.create(model="tiny", prompt="All:\n", max_tokens=12, temperature=0)
    streamed = client.completions.create(model="tiny", prompt="All:\n", max_tokens=12, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == text.choices[0].text
    assert text.usage.prompt_tokens == 5 and text.choices[0].finish_reason in ("stop", "length")
    stop = client.completions.create(model="tiny", prompt="All:\n", max_tokens=30, temperature=0, stop=["e"])
    assert "e" not in stop.choices[0].text
    seeded = [client.completions.create(model="tiny", prompt="All", max_tokens=15, seed=7, n=3) for _ in range(2)]
    assert [c.text for c in seeded[0].choices] == [c.text for c in seeded[1].choices]  # a seed repeats
    assert len({c.text for c in seeded[0].choices}) > 1 and [c.index for c in seeded[0].choices] == [0, 1, 2]
    messages = [{"role": "user", "content": "Speak."}]
    chat = client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=20)
    chunks = list(
        client.chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=20, stream=True)
    )
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason is not None
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == chat.choices[0].message.content
    options = dict(messages=messages, temperature=0, max_tokens=20, stream=True)
    counted = list(client.chat.completions.create(model="tiny", **options, stream_options={"include_usage": True}))
    assert counted[-1].choices == [] and counted[-1].usage == chat.usage  # usage last, when asked for
    assert [c.choices for c in counted[:-1]] == [c.choices for c in chunks] and chunks[-1].usage is None
    assert "<|end|>" not in chat.choices[0].message.content


@pytest.mark.slow
def test_a_client_that_hangs_up_frees_its_slot_and_sigterm_finishes_what_is_in_flight(live):
    process, url = live
    body = {"prompt": "All", "max_tokens": 60, "stream": True, "temperature": 1.0}
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=30) as response:
        next(response.iter_lines())  # the first piece, then hang up
    for _ in range(100):
        if httpx.get(url + "/health").json()["active"] == 0:
            break
        time.sleep(0.05)
    assert httpx.get(url + "/health").json()["active"] == 0
    many = {"prompt": ["All"] * 16, "n": 16, "max_tokens": 60, "stream": False}  # 256 x 60 tokens: seconds
    with pytest.raises(httpx.ReadTimeout):  # a client that gives up waiting for an answer
        httpx.post(url + "/v1/completions", json=many, timeout=0.2)
    for _ in range(100):
        if httpx.get(url + "/health").json()["active"] == 0:
            break
        time.sleep(0.05)
    assert httpx.get(url + "/health").json() | {"model": None} == {
        "status": "ok",
        "model": None,
        "active": 0,
        "waiting": 0,
    }
    finished = {}

    def long_request():
        r = httpx.post(url + "/v1/completions", json=body | {"stream": False, "max_tokens": 55}, timeout=60)
        finished["response"] = r

    thread = threading.Thread(target=long_request)
    thread.start()
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    thread.join(60)
    assert process.wait(timeout=60) == 0
    assert finished["response"].status_code == 200
    assert finished["response"].json()["choices"][0]["finish_reason"] in ("stop", "length")
    stderr = process.stderr.read()
    assert "stopped: every request in flight was answered" in stderr and "Traceback" not in stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=2)


@pytest.mark.slow
def test_the_server_command_refuses_bad_settings(checkpoints):
    def serve(*args):
        command = [sys.executable, "-m", "gpt.serve", *args]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)

    result = serve(str(checkpoints[0]) + "x", "--port", "1")
    assert result.returncode == 1 and "error: checkpoint" in result.stderr and "does not exist" in result.stderr
    with socket.socket() as taken:  # another server holds the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(str(checkpoints[0]), "--port", str(port))
    assert result.returncode == 1 and f"error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and "serving" not in result.stderr
    result = serve(str(checkpoints[0]), "--port", "70000")
    assert result.returncode == 1 and "error: --port must be from 0 to 65535" in result.stderr


def test_int8_weights_decode_as_predict_and_the_engine_do(checkpoints, tmp_path):
    model, tokenizer = load_model(checkpoints[0])
    int8 = int8_weights(copy.deepcopy(model))
    assert sum(isinstance(m, torch.nn.Linear) for m in int8.modules()) == 0  # every Linear quantized
    assert any(isinstance(m, torch.nn.Linear) for m in model.modules())  # the fp32 model untouched
    x = torch.tensor([tokenizer.encode(LINES_TEXT[:64])])
    with torch.no_grad():
        fp32_logp, int8_logp = model(x).log_softmax(-1), int8(x).log_softmax(-1)
    assert (fp32_logp.argmax(-1) == int8_logp.argmax(-1)).float().mean() >= 0.9  # the same choices, nearly always
    assert (fp32_logp.exp() * (fp32_logp - int8_logp)).sum(-1).mean() < 0.01  # KL(fp32 || int8), in nats
    settings = SamplingSettings(max_new_tokens=20, temperature=0, stream=False)
    (expected,) = complete(int8, tokenizer, ["All:\n"], settings)
    job = dict(ids=tokenizer.encode("All:\n"), max_tokens=20, temperature=0.0)
    assert collect(Engine(int8, tokenizer, slots=2), [job], tokenizer)[0][0] == expected.text
    args = "--data.prompt All:\\n --model.sampling.temperature 0 --model.sampling.max_new_tokens 20".split()
    result = predict(checkpoints[0], tmp_path, *args, "--model.sampling.int8", "true")
    assert result.returncode == 0 and expected.text in result.stdout
    with pytest.raises(ValueError, match="int8 weights .* run on the CPU"):
        int8_weights(model.to("meta"))
