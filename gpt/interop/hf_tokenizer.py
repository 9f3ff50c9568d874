"""Our tokenizers as Hugging Face fast tokenizers, id for id.

    save_hf_tokenizer(tokenizer, "out/my-gpt", block_size=256)
    AutoTokenizer.from_pretrained("out/my-gpt")("To be")["input_ids"] == tokenizer.encode("To be")

A tiktoken encoding (ours included: a trained BPE encodes through tiktoken) is byte-level
BPE: pre-split by a regex, each piece's bytes merged by rank. The `tokenizers` library
does the same, with tokens spelled in GPT-2's printable stand-ins for bytes
(bytes_to_unicode) and a list of merges instead of ranks; the merges are recovered from
the ranks as transformers' TikTokenConverter does. A character tokenizer becomes a
WordLevel model over single characters.

Special tokens are matched wherever they occur in the text, as our encode does with
allowed_special="all". Writing needs the `tokenizers` library, not `transformers`.
Plain Python, no Lightning.
"""

from __future__ import annotations

import json
from pathlib import Path

import regex
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as HFTokenizer

from gpt.files import write_text
from gpt.tokenizers import ENDOFTEXT, MASK, PAD, CharTokenizer, TiktokenBacked, Tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character, so that a token's bytes can be
    written as a string: printable Latin-1 stands for itself, the other 68 bytes (space,
    control characters, ...) for the characters from U+0100 on ("Ġ" is the space)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in chars):
        chars[b] = chr(256 + n)
    return dict(sorted(chars.items()))


def onig_pattern(pattern: str) -> str:
    r"""Our split regex in the dialect of `tokenizers` (Oniguruma, Ruby syntax), cutting
    the same pieces as tiktoken: there `x{1,3}+` is not a possessive `x{1,3}` but repeats
    of it (cl100k's numbers would not be cut into threes), and `$` ends any line, where
    tiktoken's ends the text, as `\z` does."""
    pattern = regex.sub(r"(?<!\\)\$", r"\\z", pattern)
    return regex.sub(r"(\{\d+(?:,\d*)?\})\+", r"\1", pattern)


def merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merges that give tiktoken's tokens in tiktoken's order. tiktoken merges the
    adjacent pair whose joined bytes have the lowest rank, whichever two tokens they were,
    so every split of a token into two tokens is a merge, ranked as the token."""
    merges = [(t[:i], t[i:]) for t in ranks for i in range(1, len(t)) if t[:i] in ranks and t[i:] in ranks]
    return sorted(merges, key=lambda pair: (ranks[pair[0] + pair[1]], ranks[pair[0]], ranks[pair[1]]))


def byte_level_bpe(ranks: dict[bytes, int], pattern: str, specials: dict[str, int]) -> HFTokenizer:
    """A byte-level BPE that encodes as tiktoken does with these ranks and this regex."""
    byte_char = bytes_to_unicode()

    def spell(token: bytes) -> str:
        return "".join(byte_char[b] for b in token)

    vocab = {spell(token): rank for token, rank in ranks.items()} | specials
    merges = [(spell(a), spell(b)) for a, b in merges_from_ranks(ranks)]
    # ignore_merges: a piece that is a token is that token, as in tiktoken, whichever
    # merges would otherwise apply first.
    hf = HFTokenizer(models.BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(onig_pattern(pattern)), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),  # bytes -> stand-ins
        ]
    )
    hf.decoder = decoders.ByteLevel()
    hf.post_processor = processors.ByteLevel(trim_offsets=False)  # adds no tokens
    return hf


def char_level(chars: str, specials: dict[str, int]) -> HFTokenizer:
    """One id per character: a WordLevel model whose words are single characters."""
    hf = HFTokenizer(models.WordLevel({ch: i for i, ch in enumerate(chars)} | specials, unk_token=None))
    # Every character its own piece, newlines and spaces included ([\s\S]: any character).
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    hf.decoder = decoders.Fuse()  # join the characters without spaces between them
    return hf


def hf_tokenizer(tokenizer: Tokenizer) -> HFTokenizer:
    """A `tokenizers` Tokenizer with our tokenizer's ids, special tokens included."""
    # The tokenizers library gives an added token the id its model has for it, else the
    # next free one; cl100k_base's special ids have gaps, so they go in the model too.
    specials = tokenizer.special_tokens
    if isinstance(tokenizer, TiktokenBacked):
        hf = byte_level_bpe(tokenizer.enc._mergeable_ranks, tokenizer.enc._pat_str, specials)
    elif isinstance(tokenizer, CharTokenizer):
        hf = char_level(tokenizer.chars, specials)
    else:
        raise ValueError(f"no Hugging Face tokenizer for a {type(tokenizer).__name__}")
    hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return hf


def special_tokens_map(tokenizer: Tokenizer) -> dict:
    """transformers' names for our special tokens: <|endoftext|> ends and (as GPT-2's)
    begins a text; <|pad|> pads, <|mask|> is the masked language model's mask."""
    specials = tokenizer.special_tokens
    roles = {"bos_token": ENDOFTEXT, "eos_token": ENDOFTEXT, "pad_token": PAD, "mask_token": MASK}
    out = {role: s for role, s in roles.items() if s in specials}
    others = [s for s in specials if s not in roles.values()]
    return out | ({"additional_special_tokens": others} if others else {})


def save_hf_tokenizer(
    tokenizer: Tokenizer, out_dir: str | Path, block_size: int, chat_template: str | None = None
) -> list[str]:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json for
    AutoTokenizer.from_pretrained(out_dir), each atomically; the names written. chat_template:
    the Jinja template apply_chat_template renders (gpt/data/templates.py)."""
    out_dir = Path(out_dir)
    hf = hf_tokenizer(tokenizer)
    roles = special_tokens_map(tokenizer)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",  # reads tokenizer.json as it is
        "model_max_length": block_size,
        "clean_up_tokenization_spaces": False,  # would turn " ." into "." when decoding
        **roles,
    } | ({"chat_template": chat_template} if chat_template else {})
    files = {
        "tokenizer.json": hf.to_str(pretty=True),
        "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False),
        "special_tokens_map.json": json.dumps(roles, indent=2, ensure_ascii=False),
    }
    for name, text in files.items():
        write_text(out_dir / name, text + "\n")
    return list(files)
