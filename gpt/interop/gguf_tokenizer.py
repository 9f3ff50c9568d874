"""Our tokenizers as llama.cpp's tokenizer inside a GGUF file, id for id.

    add_tokenizer(writer, tokenizer, template="chat")   # a gguf.GGUFWriter's tokenizer.* keys

llama.cpp's BPE vocabulary (tokenizer.ggml.model "gpt2") is Hugging Face's byte-level BPE:
tokens spelled in GPT-2's printable stand-ins for bytes, merges ranked by priority
(gpt/interop/hf_tokenizer.py makes both from tiktoken's ranks), and a pre-tokenizer that
is not stored but named (tokenizer.ggml.pre): each name picks a split regex compiled into
llama.cpp (src/llama-vocab.cpp), and an unknown name is refused when the file loads. So a
tokenizer exports only when llama.cpp has its regex:

    r50k/p50k (GPT-2's), our BPE with pattern gpt2   -> "gpt-2"
    cl100k_base, our BPE with pattern gpt4           -> "llama-bpe" (Llama 3's regex)

Llama 3's regex is cl100k's but for tiktoken's `\\s++$`: whitespace that ends a text, a line
break and spaces after it, is one piece here and two there. The ids still agree unless a
token joins a line break to what follows it, which only such a piece can teach a BPE:
cl100k_base has none, and a tokenizer that has one is refused.

"llama-bpe" also looks a whole piece up before merging, as tiktoken does. A character
vocabulary maps exactly: a token per character, and merges that only join the bytes of
one character; without <|endoftext|> (which llama.cpp's gpt2 vocabulary would take token
11 for) as its rwkv vocabulary, for ASCII. Special tokens are control tokens: matched only
where llama.cpp is asked to parse specials, as our encode does only for allowed_special.
Plain Python, no Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf
import regex

from gpt.data.templates import JINJA, TEMPLATES
from gpt.interop.hf_tokenizer import bytes_to_unicode, merges_from_ranks
from gpt.tokenizers import ENDOFTEXT, PAD, CharTokenizer, TiktokenBacked, Tokenizer
from gpt.tokenizers.bpe import SPLIT_PATTERNS

# Our split regexes (tiktoken's r50k and cl100k patterns are these very strings) -> the
# llama.cpp pre-tokenizer with the same regex.
PRE_TOKENIZERS = {SPLIT_PATTERNS["gpt2"]: "gpt-2", SPLIT_PATTERNS["gpt4"]: "llama-bpe"}
# GGUF cannot store an empty array and llama.cpp needs the merges key: a character
# vocabulary of single bytes gets this one, which never applies (0xC0 is never in UTF-8).
NO_MERGE = "À À"
# llama.cpp's gpt2 (BPE) vocabulary takes token 11 as its end of text unless the file names one.
DEFAULT_EOS = 11


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]
    types: list[int]  # gguf.TokenType per token
    merges: list[str]  # "left right", highest priority first
    pre: str | None  # the pre-tokenizer's name (gpt2 vocabularies)
    model: str = "gpt2"  # llama.cpp's kind of vocabulary: gpt2 (BPE) or rwkv


BYTE_CHAR = bytes_to_unicode()


def spell(token: bytes) -> str:
    """A token's bytes in GPT-2's printable stand-ins ("Ġ" for the space)."""
    return "".join(BYTE_CHAR[b] for b in token)


def byte_level_vocab(tokenizer: TiktokenBacked) -> Vocab:
    """tiktoken's ranks as tokens and merges; ids that no token has (cl100k_base's gaps
    before its special tokens) become unused placeholders, as convert_hf_to_gguf.py writes them."""
    pattern = tokenizer.enc._pat_str
    if pattern not in PRE_TOKENIZERS:
        raise ValueError(
            f"the tokenizer {tokenizer!r} splits text with the regex {pattern!r}, which no llama.cpp "
            f"pre-tokenizer has: llama.cpp would cut pieces differently. GGUF export takes GPT-2's split "
            "(tiktoken gpt2, bpe pattern gpt2) or GPT-4's (cl100k_base, bpe pattern gpt4)"
        )
    ranks = tokenizer.enc._mergeable_ranks
    if PRE_TOKENIZERS[pattern] == "llama-bpe":
        check_no_token_after_line_break(ranks)
    tokens = [f"[PAD{i}]" for i in range(tokenizer.vocab_size)]
    types = [gguf.TokenType.UNUSED] * tokenizer.vocab_size
    for token, rank in ranks.items():
        tokens[rank], types[rank] = spell(token), gguf.TokenType.NORMAL
    merges = [f"{spell(a)} {spell(b)}" for a, b in merges_from_ranks(ranks)]
    return Vocab(tokens, types, merges, PRE_TOKENIZERS[pattern])


def check_no_token_after_line_break(ranks: dict[bytes, int]) -> None:
    """Refuse tokens that end in something after a line break (b"\\n  "): tiktoken makes them from
    the whitespace ending a text, which llama.cpp's llama-bpe pre-tokenizer cuts at the break."""
    joined = [t for t in ranks if regex.search(rb"[\r\n][^\r\n]+\Z", t)]
    if joined:
        raise ValueError(
            f"the tokenizer has {len(joined)} tokens that join a line break to what follows it (e.g. {joined[0]!r}), "
            "learned from whitespace that ends a text: llama.cpp's pre-tokenizer for this split regex (llama-bpe) "
            "cuts such whitespace after the line break, so its ids would differ from ours there"
        )


def char_vocab(tokenizer: CharTokenizer) -> Vocab:
    """A token per character; a character of several UTF-8 bytes is joined by merges that
    take its bytes left to right, which no other text can trigger (UTF-8's lead and
    continuation bytes never meet across a character boundary)."""
    encoded = [ch.encode("utf-8") for ch in tokenizer.chars]
    merges = [f"{spell(b[:i])} {spell(b[i : i + 1])}" for b in encoded for i in range(1, len(b))]
    tokens = [spell(b) for b in encoded]
    types = [gguf.TokenType.NORMAL] * len(tokens)
    return Vocab(tokens, types, list(dict.fromkeys(merges)) or [NO_MERGE], "gpt-2")


def ascii_char_vocab(tokenizer: CharTokenizer) -> Vocab:
    """A character vocabulary without <|endoftext|>, as llama.cpp's rwkv vocabulary: its
    tokenizer takes the longest token that the next bytes spell, here the next character,
    and it has no end of text unless the file names one. Only for ASCII characters without
    special tokens: that tokenizer takes a special token's text for the token even where
    specials are not parsed, and never returns on a character it lacks whose first byte
    begins one it has. Tokens are written as it reads them: a backslash escapes."""
    if tokenizer.special_tokens or not tokenizer.chars.isascii():
        what = "special tokens" if tokenizer.special_tokens else "characters beyond ASCII"
        raise ValueError(
            f"the character vocabulary has no {ENDOFTEXT} token but has {what}: llama.cpp's gpt2 vocabulary "
            f"would take token {DEFAULT_EOS} ({tokenizer.decode([DEFAULT_EOS])!r}) for the end of text, and its "
            f"rwkv vocabulary serves ASCII characters without special tokens only. Export a model whose tokenizer "
            f"has {ENDOFTEXT} (a corpus folder's, an alpaca fine-tune's), or train with data.tokenizer.kind bpe"
        )
    tokens = [ch.replace("\\", "\\\\") for ch in tokenizer.chars]
    return Vocab(tokens, [gguf.TokenType.NORMAL] * len(tokens), [], None, "rwkv")


def check_end_of_text(tokenizer: Tokenizer) -> None:
    """Refuse a vocabulary without <|endoftext|> whose token 11 llama.cpp would take for one."""
    if ENDOFTEXT not in tokenizer.special_tokens and tokenizer.vocab_size > DEFAULT_EOS:
        raise ValueError(
            f"the tokenizer has no {ENDOFTEXT} token: llama.cpp then takes token {DEFAULT_EOS} "
            f"({tokenizer.decode([DEFAULT_EOS])!r}) for the end of text and would stop writing there. Export a "
            f"model whose tokenizer has {ENDOFTEXT} (a corpus folder's, a fine-tuned one's, any BPE or tiktoken "
            "one): train with data.tokenizer.kind bpe, say, for a plain text corpus"
        )


def gguf_vocab(tokenizer: Tokenizer) -> Vocab:
    """The tokens, their types and merges, and the pre-tokenizer's name; special tokens
    are control tokens at their ids."""
    if isinstance(tokenizer, CharTokenizer):
        vocab = char_vocab(tokenizer) if ENDOFTEXT in tokenizer.special_tokens else ascii_char_vocab(tokenizer)
    elif isinstance(tokenizer, TiktokenBacked):
        check_end_of_text(tokenizer)
        vocab = byte_level_vocab(tokenizer)
    else:
        raise ValueError(f"no GGUF tokenizer for a {type(tokenizer).__name__}")
    tokens, types = list(vocab.tokens), list(vocab.types)
    tokens += [""] * (tokenizer.vocab_size - len(tokens))  # the special tokens follow a char vocabulary
    types += [gguf.TokenType.UNUSED] * (tokenizer.vocab_size - len(types))
    for text, i in tokenizer.special_tokens.items():
        tokens[i], types[i] = text, gguf.TokenType.CONTROL
    return Vocab(tokens, [int(t) for t in types], vocab.merges, vocab.pre, vocab.model)


def add_tokenizer(writer: gguf.GGUFWriter, tokenizer: Tokenizer, template: str | None = None) -> None:
    """The tokenizer.* keys: the vocabulary, <|endoftext|> as llama.cpp's begin and end of
    text (never added to a prompt: our encode adds nothing), and for a fine-tuned model its
    chat template (the Jinja text that transformers reads too) and end-of-turn token, where
    llama.cpp's and Ollama's chat stop."""
    vocab = gguf_vocab(tokenizer)
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre is not None:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    specials = tokenizer.special_tokens
    if ENDOFTEXT in specials:
        writer.add_bos_token_id(specials[ENDOFTEXT])
        writer.add_eos_token_id(specials[ENDOFTEXT])
    if PAD in specials:
        writer.add_pad_token_id(specials[PAD])
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    if template is not None:
        writer.add_chat_template(JINJA[template])
        writer.add_eot_token_id(specials[TEMPLATES[template].stop_token])
