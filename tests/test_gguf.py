"""gpt/interop/gguf.py: what a GGUF file holds (read back with the gguf package's reader),
what cannot be expressed is refused by name with nothing written, and the command's errors
are one line. tests/test_gguf_llama_cpp.py runs the files in llama.cpp itself."""

import subprocess
import sys

import gguf
import numpy as np
import pytest
import torch

from gpt.data.templates import CHAT_JINJA
from gpt.interop.gguf import export_gguf, write_gguf
from gpt.model.models import GPT, build_model
from gpt.tokenizers import CHAT_TOKENS, END, ENDOFTEXT, SPECIAL_TOKENS, BPETokenizer, CharTokenizer
from helpers import FIXTURES, LINES_TEXT, ROOT, tiny_config, trained_checkpoint

Q = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train([LINES_TEXT], vocab_size=300)


def gpt(tokenizer, **kwargs) -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_config(vocab_size=tokenizer.vocab_size, **kwargs)).eval()


def fields(path) -> dict:
    """The file's metadata, as Python values."""
    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()}


def tensor_types(path) -> dict[str, gguf.GGMLQuantizationType]:
    return {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}


def test_the_file_holds_gpt2_metadata_and_the_tokenizer(bpe, tmp_path):
    chat = bpe.with_special_tokens(CHAT_TOKENS)
    path = write_gguf(gpt(chat, n_layer=2), tmp_path / "m.gguf", chat, template="chat")
    meta = fields(path)
    assert meta["general.architecture"] == "gpt2"
    sizes = ("context_length", "embedding_length", "block_count", "attention.head_count")
    assert [meta[f"gpt2.{k}"] for k in sizes] == [256, 32, 2, 2]  # block_size 16, as llama.cpp's context rounds
    assert meta["gpt2.feed_forward_length"] == 128 and meta["gpt2.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    assert (meta["tokenizer.ggml.model"], meta["tokenizer.ggml.pre"]) == ("gpt2", "llama-bpe")  # our BPE's gpt4 split
    tokens = meta["tokenizer.ggml.tokens"]
    assert (
        len(tokens) == chat.vocab_size and tokens[:3] == ["Ā", "ā", "Ă"] and tokens[32] == "Ġ"
    )  # bytes 0, 1, 2; space
    assert [tokens[i] for i in chat.special_tokens.values()] == list(chat.special_tokens)
    types = meta["tokenizer.ggml.token_type"]
    assert {types[i] for i in chat.special_tokens.values()} == {gguf.TokenType.CONTROL} and types[
        0
    ] == gguf.TokenType.NORMAL
    assert meta["tokenizer.ggml.eos_token_id"] == meta["tokenizer.ggml.bos_token_id"] == chat.special_tokens[ENDOFTEXT]
    assert meta["tokenizer.ggml.eot_token_id"] == chat.special_tokens[END]  # where a chat turn stops
    assert meta["tokenizer.ggml.add_bos_token"] is False and meta["tokenizer.chat_template"] == CHAT_JINJA
    assert len(meta["tokenizer.ggml.merges"]) >= len(bpe.merges)


def test_f16_and_q8_0_store_the_matrices_and_keep_the_rest_f32(bpe, tmp_path):
    model = gpt(bpe, tie_weights=False)
    embedding_bytes = {}
    for dtype, matrix in (("f32", Q.F32), ("f16", Q.F16), ("q8_0", Q.Q8_0)):
        path = write_gguf(model, tmp_path / f"{dtype}.gguf", bpe, dtype)
        types = tensor_types(path)
        matrices = {"token_embd.weight", "output.weight", "blk.0.attn_qkv.weight", "blk.1.ffn_down.weight"}
        assert {types[name] for name in matrices} == {matrix}
        assert {types["position_embd.weight"], types["blk.0.attn_norm.weight"], types["blk.1.ffn_up.bias"]} == {Q.F32}
        embedding_bytes[dtype] = next(t.n_bytes for t in gguf.GGUFReader(path).tensors if t.name == "token_embd.weight")
    # 4 bytes a weight, 2, and 34 a block of 32 (32 one-byte weights and an f16 scale).
    assert embedding_bytes == {"f32": 300 * 32 * 4, "f16": 300 * 32 * 2, "q8_0": 300 * 34}
    # Rows 24 long are not a whole number of q8_0's blocks of 32: those matrices stay f16.
    types = tensor_types(write_gguf(gpt(bpe, n_embd=24), tmp_path / "narrow.gguf", bpe, "q8_0"))
    assert types["blk.0.attn_qkv.weight"] == Q.F16


def test_weights_are_ours_in_linear_layout_and_a_model_without_biases_gets_zero_ones(bpe, tmp_path):
    model = gpt(bpe, bias=False)
    tensors = {t.name: t for t in gguf.GGUFReader(write_gguf(model, tmp_path / "m.gguf", bpe)).tensors}
    qkv = model.transformer.h[1].attn.c_attn.weight.detach().numpy()  # nn.Linear: (3 * 32, 32)
    assert np.array_equal(tensors["blk.1.attn_qkv.weight"].data, qkv)  # numpy shape (out, in); ggml's ne (in, out)
    assert list(tensors["blk.1.attn_qkv.weight"].shape) == [32, 96]
    for name in ("blk.0.attn_qkv.bias", "blk.1.ffn_up.bias", "output_norm.bias"):
        assert not tensors[name].data.any()
    assert "output.weight" not in tensors  # tied: llama.cpp reads the token embedding
    padded = gpt(bpe, padded_vocab_multiple=64)  # 320 rows, 300 of them tokens
    rows = {t.name: t.data for t in gguf.GGUFReader(write_gguf(padded, tmp_path / "p.gguf", bpe)).tensors}
    assert np.array_equal(rows["token_embd.weight"], padded.transformer.wte.weight[:300].detach().numpy())
    # Positions past block_size (16) up to llama.cpp's context (256) repeat the last one.
    wpe = model.transformer.wpe.weight.detach().numpy()
    positions = tensors["position_embd.weight"].data
    assert positions.shape == (256, 32) and np.array_equal(positions[:16], wpe)
    assert np.array_equal(positions[16:], np.repeat(wpe[-1:], 240, axis=0))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(pos="rope"), "cannot run a model with pos=rope: it needs arch=gpt, pos=learned"),
        (dict(mlp="relu"), "mlp=relu"),
        (dict(causal=False), "causal=False: .* a masked language model"),
        (dict(mlp="swiglu"), "llama architecture takes RoPE, SwiGLU and RMSNorm only all together"),
        (dict(pos="rope", mlp="swiglu", norm="rmsnorm", bias=False), "LLaMA's layout, which llama.cpp's llama"),
    ],
)
def test_what_llama_cpps_gpt2_cannot_compute_is_refused_by_name(bpe, tmp_path, settings, message):
    with pytest.raises(ValueError, match=message.replace("(", "\\(")):
        write_gguf(gpt(bpe, **settings), tmp_path / "m.gguf", bpe)
    with pytest.raises(ValueError, match="arch=blocks.*the teaching models have no llama.cpp architecture"):
        write_gguf(build_model(tiny_config(arch="blocks", vocab_size=bpe.vocab_size)), tmp_path / "m.gguf", bpe)
    assert list(tmp_path.iterdir()) == []


def test_tokenizers_llama_cpp_cannot_reproduce_are_refused(bpe, tmp_path):
    odd_split = BPETokenizer(bpe.merges, r"\S+|\s+")
    with pytest.raises(ValueError, match="splits text with the regex '.*', which no llama.cpp pre-tokenizer has"):
        write_gguf(gpt(odd_split), tmp_path / "m.gguf", odd_split)
    # tiktoken's `\s++$` teaches a BPE a line break and the spaces after it from texts that end so.
    ends = BPETokenizer.train(["To be\n  "] * 50 + [LINES_TEXT], vocab_size=300)
    with pytest.raises(ValueError, match=r"tokens that join a line break to what follows it \(e.g. b'\\n "):
        write_gguf(gpt(ends), tmp_path / "m.gguf", ends)
    no_end = BPETokenizer(bpe.merges, bpe.pattern, special_tokens=())
    with pytest.raises(ValueError, match="the tokenizer has no <\\|endoftext\\|> token: llama.cpp then takes token 11"):
        write_gguf(gpt(no_end), tmp_path / "m.gguf", no_end)
    beyond_ascii = CharTokenizer.from_text(LINES_TEXT + "é")
    with pytest.raises(ValueError, match="token but has characters beyond ASCII: llama.cpp's gpt2 vocabulary would"):
        write_gguf(gpt(beyond_ascii), tmp_path / "m.gguf", beyond_ascii)
    chat_chars = CharTokenizer.from_text(LINES_TEXT, CHAT_TOKENS)
    with pytest.raises(ValueError, match="token but has special tokens: llama.cpp's gpt2 vocabulary would"):
        write_gguf(gpt(chat_chars), tmp_path / "m.gguf", chat_chars)
    with pytest.raises(ValueError, match="the tokenizer has 300 tokens but the model 50"):
        write_gguf(GPT(tiny_config()), tmp_path / "m.gguf", bpe)
    assert list(tmp_path.iterdir()) == []


def test_a_character_vocabulary_maps_a_token_to_each_character(tmp_path):
    chars = CharTokenizer.from_text("ab\né€🙂", SPECIAL_TOKENS)
    meta = fields(write_gguf(gpt(chars), tmp_path / "m.gguf", chars))
    assert meta["tokenizer.ggml.tokens"][:6] == ["Ċ", "a", "b", "Ã©", "âĤ¬", "ðŁĻĤ"]  # each in byte stand-ins
    # Merges join each character's bytes, left to right, and nothing else.
    assert meta["tokenizer.ggml.merges"] == ["Ã ©", "â Ĥ", "âĤ ¬", "ð Ł", "ðŁ Ļ", "ðŁĻ Ĥ"]
    ascii_only = CharTokenizer.from_text("ab", (ENDOFTEXT,))
    assert fields(write_gguf(gpt(ascii_only), tmp_path / "a.gguf", ascii_only))["tokenizer.ggml.merges"] == ["À À"]
    # Without <|endoftext|>, llama.cpp's gpt2 vocabulary would end texts at token 11: its rwkv one has no end.
    plain = CharTokenizer.from_text("ab\\\n")
    meta = fields(write_gguf(gpt(plain), tmp_path / "p.gguf", plain))
    assert meta["tokenizer.ggml.model"] == "rwkv" and meta["tokenizer.ggml.tokens"] == ["\n", "\\\\", "a", "b"]
    assert "tokenizer.ggml.eos_token_id" not in meta and "tokenizer.ggml.merges" not in meta


def test_a_failed_write_leaves_the_previous_file(bpe, tmp_path, monkeypatch):
    path = write_gguf(gpt(bpe), tmp_path / "m.gguf", bpe)
    before = path.read_bytes()

    def fail(self, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", fail)
    with pytest.raises(OSError, match="disk gone"):
        write_gguf(gpt(bpe, n_layer=1), path, bpe)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.gguf"]
    with pytest.raises(ValueError, match="is a folder; give the name of a .gguf file in it"):
        write_gguf(gpt(bpe), tmp_path, bpe)


def test_export_writes_a_checkpoints_model_and_template(bpe, tmp_path, capsys):
    chat = bpe.with_special_tokens(CHAT_TOKENS)
    trained_checkpoint(chat, tmp_path / "chat.ckpt", steps=1, template="chat")
    export_gguf(str(tmp_path / "chat.ckpt"), str(tmp_path / "chat.gguf"), "q8_0")
    out = capsys.readouterr().out
    assert (
        out.startswith(f"wrote {tmp_path / 'chat.gguf'} (")
        and "q8_0, llama.cpp architecture gpt2, context 256 tokens, chat template 'chat'" in out
    )
    meta = fields(tmp_path / "chat.gguf")
    assert meta["tokenizer.chat_template"] == CHAT_JINJA and meta["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0


def test_the_export_command_writes_a_character_model(tmp_path):
    args = [str(FIXTURES / "legacy" / "char_gpt2.ckpt"), str(tmp_path / "m.gguf")]
    result = subprocess.run([sys.executable, "-m", "gpt.interop.gguf", *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith(f"wrote {tmp_path / 'm.gguf'} (") and not result.stderr
    assert fields(tmp_path / "m.gguf")["gpt2.context_length"] == 256


@pytest.mark.parametrize(
    "checkpoint, message",
    [
        ("bpe_masked.ckpt", "mlp=swiglu, norm=rmsnorm, causal=False: it needs"),
        ("char_blocks.ckpt", "the teaching models have no llama.cpp architecture"),
        ("missing.ckpt", "does not exist"),
    ],
)
def test_export_command_errors_are_one_line(tmp_path, checkpoint, message):
    args = [str(FIXTURES / "legacy" / checkpoint), str(tmp_path / "m.gguf")]
    result = subprocess.run([sys.executable, "-m", "gpt.interop.gguf", *args], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr.splitlines()[0]
    assert list(tmp_path.iterdir()) == []
