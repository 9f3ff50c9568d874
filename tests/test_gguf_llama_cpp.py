"""gpt/interop/gguf.py checked against llama.cpp itself (the llama-cpp-python package, which
builds it from source; .ci/run installs it): a GGUF file we write gives llama.cpp our token
ids, our logits and our greedy continuation, and a chat model's template renders our prompt.
Models are tiny and made here: GPT-2's tiktoken vocabulary (random weights of a size that
gives logits with teeth), our BPE and a chat-tuned BPE model (trained for a second)."""

import copy
import random
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gpt.data.templates import TEMPLATES, Message
from gpt.interop.checkpoint import load_model
from gpt.interop.gguf import export_gguf, write_gguf
from gpt.model.generation import generate
from gpt.model.lora import LoRASettings, apply_lora
from gpt.model.models import GPT
from gpt.tokenizers import CHAT_TOKENS, END, SPECIAL_TOKENS, BPETokenizer, CharTokenizer, TiktokenTokenizer
from gpt.tokenizers.bpe import SPLIT_PATTERNS
from helpers import LINES_TEXT, tiny_config, trained_checkpoint

llama_cpp = pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed: .ci/run installs it (docs/gguf.md says how)"
)

# ASCII, accents, emoji (a ZWJ sequence too), code, runs of whitespace (trailing ones too),
# contractions, long numbers, and special tokens' text.
TEXTS = [
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n",
    "café naïve é Ærø 你好 🙂🙃 👩‍👩‍👧 \u00a0nbsp\u3000",
    "def f(x):\n    return {'a': x ** 2}  # square\n\n\tpass\r\n",
    "a  \nb   \n\n\n  x\t\t y     ",
    "I'M sure it's they'll WE'VE don't",
    "1234567 or 3.14159, 42nd",
    "x\n  ",
    "<|endoftext|>All:<|pad|> Speak<|mask|>",
    " ",
]
# Texts made at random of these pieces (seeded) too.
PIECES = ["  ", "\n", "\t", "\r\n", "Ab", "123456", "'s", "'LL", "é", "🙂", ".", "x", " the", "\u3000", "<|pad|>"]
# Largest difference in logits allowed in f32, as a fraction of their standard deviation
# (measured on these models: 2.5e-3 largest, 1e-3 mean): llama.cpp's CPU GELU reads a table of
# 16-bit floats even in f32 (ggml-cpu/vec.h, GGML_GELU_FP16); with that rounding in ours too,
# f32 agrees to 9e-5. In f16 and q8_0 llama.cpp rounds both operands of every product with a
# matrix: the matrix as stored, and the activations to the same type (ggml's vec_dot_type).
# How much rounding the matrices moves our own logits is measured (weights_as_stored); the
# activations' rounding, at the same precision, moves them about as much: twice that, plus
# f32's allowance, bounds the difference (a margin of 1.5 on top, for sums in another order).
TOLERANCE = 5e-3
MEAN_TOLERANCE = 1e-3
GGML_GELU_TOLERANCE = 2e-4
BOTH_OPERANDS = 2 * 1.5


def load(path, **kwargs):
    """llama.cpp on the file: every position's logits kept, the KV cache in f32 (its f16
    default rounds keys and values), one thread (the sums in one order)."""
    f32 = llama_cpp.GGML_TYPE_F32
    settings = dict(n_ctx=64, logits_all=True, n_threads=1, type_k=f32, type_v=f32, verbose=False) | kwargs
    return llama_cpp.Llama(str(path), **settings)


@pytest.fixture
def llama():
    """Open GGUF files with llama.cpp; each is closed when the test ends."""
    opened = []

    def open_(path, **kwargs):
        opened.append(load(path, **kwargs))
        return opened[-1]

    yield open_
    for model in opened:
        model.close()


def random_gpt(vocab_size: int, **kwargs) -> GPT:
    """Random weights large enough that logits spread, the position embeddings largest, so
    that greedy decoding writes varied ids rather than one over and over."""
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=vocab_size, block_size=64, **kwargs)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 2.0 if "wpe" in name else 0.3 if p.dim() > 1 else 0.5)
    return model


def chat_text(n: int = 40) -> str:
    """Short chats in the chat template: a user's line, the assistant's answer, <|end|>."""
    lines = [line for line in LINES_TEXT.splitlines() if line][:8]
    messages = [
        Message("user", lines[i % 8]) if i % 2 == 0 else Message("assistant", lines[(i + 1) % 8]) for i in range(n)
    ]
    return "".join(s.text for s in TEMPLATES["chat"].render(messages))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (model, tokenizer, checkpoint or None)."""
    folder = tmp_path_factory.mktemp("gguf")
    gpt2 = TiktokenTokenizer("gpt2")
    bpe = BPETokenizer.train([LINES_TEXT], vocab_size=300)
    chat = bpe.with_special_tokens(CHAT_TOKENS)
    chars = CharTokenizer.from_text(LINES_TEXT)  # no special tokens, as Tiny Shakespeare's
    return {
        "gpt2": (random_gpt(gpt2.vocab_size), gpt2, None),
        "char": (trained_checkpoint(chars, folder / "char.ckpt"), chars, folder / "char.ckpt"),
        "bpe": (trained_checkpoint(bpe, folder / "bpe.ckpt"), bpe, folder / "bpe.ckpt"),
        "chat": (
            trained_checkpoint(chat, folder / "chat.ckpt", text=chat_text(), template="chat"),
            chat,
            folder / "chat.ckpt",
        ),
    }


class GgmlGelu(torch.nn.Module):
    """GELU as llama.cpp's CPU backend computes it: the input rounded to a 16-bit float, the
    value read from a table of 16-bit floats; below -10 zero, above 10 the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(x.half().float(), approximate="tanh").half().float()
        return torch.where(x <= -10, 0.0, torch.where(x >= 10, x, y))


def with_ggml_gelu(model: GPT) -> GPT:
    model = copy.deepcopy(model)
    for block in model.transformer.h:
        block.mlp.act = GgmlGelu()
    return model


def weights_as_stored(model: GPT, dtype: str) -> GPT:
    """The model with its matrices as the GGUF file stores them (position embeddings stay f32):
    rounded to f16, or quantised to q8_0 (blocks of 32, an f16 scale each) and back."""
    import gguf

    model = copy.deepcopy(model)
    qtype = {"f32": None, "f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[dtype]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if qtype is not None and p.dim() == 2 and "wpe" not in name:
                data = p.numpy()
                try:
                    stored = gguf.quants.dequantize(gguf.quants.quantize(data, qtype), qtype)
                except gguf.QuantError:  # rows not whole q8_0 blocks: written in f16 (gguf.py)
                    stored = data.astype(np.float16).astype(np.float32)
                p.copy_(torch.from_numpy(np.asarray(stored, dtype=np.float32).reshape(data.shape)))
    return model


def logits(model: GPT, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0].numpy()


def their_logits(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


# ---- token ids


@pytest.mark.parametrize("kind", ["gpt2", "cl100k_base", "bpe", "bpe-gpt2", "char", "char-ascii"])
def test_llama_cpp_tokenizes_as_we_do(kind, tmp_path, llama):
    if kind == "char":
        tokenizer = CharTokenizer.from_text(LINES_TEXT + "".join(TEXTS + PIECES), SPECIAL_TOKENS)
    elif kind == "char-ascii":  # no <|endoftext|>: llama.cpp's rwkv vocabulary
        tokenizer = CharTokenizer.from_text("".join(c for c in LINES_TEXT + "".join(TEXTS + PIECES) if c.isascii()))
    elif kind.startswith("bpe"):
        pattern = SPLIT_PATTERNS["gpt2" if kind == "bpe-gpt2" else "gpt4"]
        tokenizer = BPETokenizer.train([LINES_TEXT, "".join(TEXTS) + "."], vocab_size=400, pattern=pattern)
    else:
        tokenizer = TiktokenTokenizer(kind)
    model = GPT(tiny_config(vocab_size=tokenizer.vocab_size, n_layer=1)).eval()
    llm = llama(write_gguf(model, tmp_path / "m.gguf", tokenizer), vocab_only=True)
    rng = random.Random(0)
    randomised = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 10))) for _ in range(300)]
    for text in [*TEXTS, *randomised]:
        if kind == "char-ascii" and not text.isascii():
            continue
        for special in (False, True):  # special tokens' text as text, and as the tokens
            ours = tokenizer.encode(text, allowed_special="all" if special else frozenset())
            assert llm.tokenize(text.encode(), add_bos=False, special=special) == ours, (text, special)
            assert llm.detokenize(ours, special=special).decode() == text


# ---- logits and greedy decoding


@pytest.mark.parametrize("name", ["gpt2", "bpe", "chat", "char"])
@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
def test_llama_cpp_computes_our_logits(models, name, dtype, tmp_path, llama):
    model, tokenizer, _ = models[name]
    llm = llama(write_gguf(model, tmp_path / "m.gguf", tokenizer, dtype))
    ids = tokenizer.encode("First Citizen:\nBefore we proceed any further, hear me speak.")[:24]
    ours, theirs = logits(model, ids), their_logits(llm, ids)
    spread, diff = ours.std(), np.abs(theirs - ours)
    assert spread > 1.0  # logits with teeth
    stored = np.abs(logits(weights_as_stored(model, dtype), ids) - ours)  # 0 in f32
    assert diff.max() <= TOLERANCE * spread + BOTH_OPERANDS * stored.max(), (diff.max(), stored.max(), spread)
    assert diff.mean() <= MEAN_TOLERANCE * spread + BOTH_OPERANDS * stored.mean(), (diff.mean(), stored.mean())
    if dtype == "f32":  # all that differs is llama.cpp's rounding of GELU
        assert np.abs(theirs - logits(with_ggml_gelu(model), ids)).max() <= GGML_GELU_TOLERANCE * spread


@pytest.mark.parametrize("name", ["gpt2", "bpe", "char"])
def test_llama_cpp_continues_greedily_as_we_do(models, name, tmp_path, llama):
    model, tokenizer, _ = models[name]
    llm = llama(write_gguf(model, tmp_path / "m.gguf", tokenizer), n_ctx=0, logits_all=False)  # the file's context
    prompt = tokenizer.encode("All:\nSpe")
    n = model.config.block_size - len(prompt)  # past block_size, ours slides a window and llama.cpp cannot
    ours = generate(model, torch.tensor([prompt]), max_new_tokens=n, temperature=0)[0, len(prompt) :].tolist()
    assert len(set(ours)) > 5 and tokenizer.eot_id not in ours  # varied text; llama.cpp would stop at eot
    if name == "char":
        assert 11 in ours  # where llama.cpp's gpt2 vocabulary, without <|endoftext|>, would stop
    theirs = [token for token, _ in zip(llm.generate(prompt, temp=0.0, repeat_penalty=1.0), range(n + 16))]
    assert theirs[:n] == ours and len(theirs) == n + 16  # and on past block_size, rather than abort


# ---- a chat model


def test_llama_cpp_renders_our_chat_prompt_and_stops_where_we_stop(models, tmp_path, llama):
    model, tokenizer, _ = models["chat"]
    llm = llama(write_gguf(model, tmp_path / "chat.gguf", tokenizer, template="chat"))
    assert int(llm.metadata["tokenizer.ggml.eot_token_id"]) == tokenizer.special_tokens[END]
    # llama-cpp-python renders the file's tokenizer.chat_template with Jinja, as its chat completion does.
    formatter = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
        llm.metadata["tokenizer.chat_template"], eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    template = TEMPLATES["chat"]
    chats = [
        [Message("user", "Speak, speak.")],
        [
            Message("system", "Be brief."),
            Message("user", "Speak."),
            Message("assistant", "All:"),
            Message("user", "Hi"),
        ],
    ]
    for messages in chats:
        ours = tokenizer.encode(template.prompt(messages), allowed_special=set(template.special_tokens))
        prompt = formatter(messages=[{"role": m.role, "content": m.content} for m in messages]).prompt
        assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ours
    # The trained model ends its turn with <|end|>; llama.cpp's chat stops there too.
    prompt = tokenizer.encode(template.prompt(chats[0]), allowed_special=set(template.special_tokens))
    n = model.config.block_size - len(prompt)
    reply = generate(model, torch.tensor([prompt]), max_new_tokens=n, temperature=0)[0, len(prompt) :].tolist()
    end = tokenizer.special_tokens[END]
    assert end in reply[:-1]
    out = llm.create_chat_completion([{"role": "user", "content": "Speak, speak."}], temperature=0.0, max_tokens=n)
    assert out["choices"][0]["message"]["content"] == tokenizer.decode(reply[: reply.index(end)])
    assert out["choices"][0]["finish_reason"] == "stop"


# ---- what a checkpoint holds: LoRA merged, no biases


def test_a_lora_checkpoint_exports_merged(models, tmp_path, llama):
    model, tokenizer, ckpt = models["bpe"]
    checkpoint = torch.load(ckpt, weights_only=True)
    settings = LoRASettings(r=2, dropout=0.0, targets=("attn", "mlp"))
    adapted = apply_lora(GPT(model.config), settings)
    adapted.load_state_dict({k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}, strict=False)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)  # an update that shows
    checkpoint["hyper_parameters"]["lora"] = asdict(settings)
    checkpoint["state_dict"] = {"model." + k: v for k, v in adapted.state_dict().items()}
    torch.save(checkpoint, tmp_path / "lora.ckpt")
    export_gguf(str(tmp_path / "lora.ckpt"), str(tmp_path / "lora.gguf"))
    merged, _ = load_model(tmp_path / "lora.ckpt")
    ids = tokenizer.encode("Speak, speak.")
    assert np.abs(logits(merged, ids) - logits(model, ids)).max() > 0.1  # the adapters changed the model
    ours, theirs = logits(with_ggml_gelu(merged), ids), their_logits(llama(tmp_path / "lora.gguf"), ids)
    assert np.abs(theirs - ours).max() <= GGML_GELU_TOLERANCE * ours.std()


def test_a_model_without_biases_runs_with_zero_ones(tmp_path, llama):
    tokenizer = BPETokenizer.train([LINES_TEXT], vocab_size=300)
    model = random_gpt(tokenizer.vocab_size, bias=False, tie_weights=False)
    ids = tokenizer.encode("Speak, speak.")
    ours = logits(with_ggml_gelu(model), ids)
    theirs = their_logits(llama(write_gguf(model, tmp_path / "m.gguf", tokenizer)), ids)
    assert np.abs(theirs - ours).max() <= GGML_GELU_TOLERANCE * ours.std()
