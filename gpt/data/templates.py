"""Prompt templates: how a conversation becomes the text a model reads, and which of that
text it learns to write.

    alpaca   Stanford Alpaca's prompt (Taori et al. 2023; Raschka's chapter 7): a preamble,
             "### Instruction:", the optional "### Input:", then "### Response:"; a response ends
             with <|endoftext|>. Text markers only: any tokenizer that has <|endoftext|> serves.
    chat     special tokens around each turn, for multi-turn chats (as Phi-3 and Zephyr):
             <|system|>\n...<|end|>\n<|user|>\n...<|end|>\n<|assistant|>\n...<|end|>\n
             The tokenizer gains the four tokens; the model's embedding grows by four rows.

render() cuts a conversation into segments, each marked trained (an assistant's reply and
the token that ends it) or not (everything the model is given); prompt() is the text that
asks for the next reply. A Hugging Face export writes `chat_template` (CHAT_JINJA) so that
`transformers`' apply_chat_template gives the very same text.

Plain Python, no Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpt.tokenizers.base import ASSISTANT, CHAT_TOKENS, END, ENDOFTEXT, SYSTEM, USER

ROLES = ("system", "user", "assistant")
ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)


@dataclass(frozen=True)
class Message:
    role: str  # system, user or assistant
    content: str
    input: str = ""  # Alpaca's optional context for an instruction (a user message)


@dataclass(frozen=True)
class Segment:
    text: str
    trained: bool  # the model learns to write it: a reply and the token that ends it


class Template:
    name = ""
    special_tokens: tuple[str, ...] = ()  # what the tokenizer must hold
    stop_token = ENDOFTEXT  # ends a reply: generation stops there

    def turn(self, message: Message) -> list[Segment]:
        raise NotImplementedError

    def reply_header(self) -> str:
        """What comes before a reply: the end of a prompt that asks for one."""
        raise NotImplementedError

    def render(self, messages: list[Message]) -> list[Segment]:
        """A conversation as segments; assistant turns are trained."""
        return [segment for message in messages for segment in self.turn(message)]

    def prompt(self, messages: list[Message]) -> str:
        """The conversation so far and the header of the next reply: what generation continues."""
        return "".join(s.text for s in self.render(messages)) + self.reply_header()


class AlpacaTemplate(Template):
    name = "alpaca"
    special_tokens = (ENDOFTEXT,)

    def turn(self, message: Message) -> list[Segment]:
        if message.role == "system":
            return [Segment(message.content.strip() + "\n\n", False)]  # in place of the preamble
        if message.role == "user":
            text = f"### Instruction:\n{message.content}\n\n"
            if message.input:
                text += f"### Input:\n{message.input}\n\n"
            return [Segment(text, False)]
        return [Segment(self.reply_header(), False), Segment(message.content + ENDOFTEXT, True), Segment("\n\n", False)]

    def reply_header(self) -> str:
        return "### Response:\n"

    def render(self, messages: list[Message]) -> list[Segment]:
        preamble = [] if messages and messages[0].role == "system" else [Segment(ALPACA_PREAMBLE + "\n\n", False)]
        return preamble + super().render(messages)


class ChatTemplate(Template):
    name = "chat"
    special_tokens = CHAT_TOKENS
    stop_token = END
    MARKERS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}

    def turn(self, message: Message) -> list[Segment]:
        content = message.content + (f"\n\n{message.input}" if message.input else "")
        if message.role != "assistant":
            return [Segment(f"{self.MARKERS[message.role]}\n{content}{END}\n", False)]
        return [Segment(self.reply_header(), False), Segment(content + END, True), Segment("\n", False)]

    def reply_header(self) -> str:
        return f"{ASSISTANT}\n"


TEMPLATES: dict[str, Template] = {"alpaca": AlpacaTemplate(), "chat": ChatTemplate()}

# The chat template for transformers' apply_chat_template (a Jinja template): the text ChatTemplate
# renders, and with add_generation_prompt the header of the next reply.
CHAT_JINJA = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
ALPACA_JINJA = (
    "{% if messages[0]['role'] != 'system' %}{{ '" + ALPACA_PREAMBLE + "\n\n' }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] | trim + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' + message['content'] + '<|endoftext|>\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)
JINJA = {"chat": CHAT_JINJA, "alpaca": ALPACA_JINJA}


def template(name: str) -> Template:
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; known templates: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]
