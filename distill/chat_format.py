"""One conversation format for training and serving students, and the parser of their answers.

ChatML turns (`<|im_start|>role\\n...<|im_end|>\\n`), the request's tools listed in the system
turn and its `response_format` as a system instruction, assistant tool calls as Hermes
`<tool_call>` blocks (what vLLM's `hermes` tool parser reads), tool results as `tool` turns.
Scratch tokenizers carry `CHAT_TEMPLATE`; pretrained ones keep their own template.
"""

from __future__ import annotations

import json
import re
import secrets
from functools import lru_cache
from typing import Any

# The tags and the response-format instruction are shared with the gateway, which builds
# the same answer grammar for vLLM students (gateway/constrain.py).
from gateway.constrain import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, format_instruction

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"

# Rendered by transformers (`apply_chat_template`) and by vLLM from the saved tokenizer, and
# by `render` below without either. Tool-call arguments may be an object or a JSON string.
CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] or '' -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set system = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- if system or tools -%}"
    "{{- '<|im_start|>system\\n' + system -}}"
    "{%- if tools -%}"
    "{%- if system -%}{{- '\\n\\n' -}}{%- endif -%}"
    "{{- '# Tools\\n\\nYou may call one or more functions. Their signatures are within "
    "<tools></tools>:\\n<tools>' -}}"
    "{%- for tool in tools -%}{{- '\\n' + (tool | tojson) -}}{%- endfor -%}"
    "{{- '\\n</tools>\\n\\nFor each call, return a JSON object with the function name and "
    "arguments within <tool_call></tool_call> tags:\\n<tool_call>\\n"
    "{\"name\": <function-name>, \"arguments\": <args-json-object>}\\n</tool_call>' -}}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in turns -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}{%- endif -%}"
    "{%- if message['role'] == 'assistant' and message['tool_calls'] -%}"
    "{%- for call in message['tool_calls'] -%}"
    "{%- set fn = call['function'] if call['function'] is defined else call -%}"
    "{%- if message['content'] or not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{{- '<tool_call>\\n{\"name\": ' + (fn['name'] | tojson) + ', \"arguments\": ' -}}"
    "{%- if fn['arguments'] is string -%}{{- fn['arguments'] -}}"
    "{%- else -%}{{- fn['arguments'] | tojson -}}{%- endif -%}"
    "{{- '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_BLOCK = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)" + re.escape(TOOL_CALL_CLOSE), re.DOTALL)
_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)  # Qwen3-style empty reasoning


def _text(content: Any) -> str | None:
    """Message content as one string: OpenAI text parts joined, other parts dropped."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text") or "") for p in content if isinstance(p, dict) and "text" in p
        )
    return str(content)


def _arguments(raw: Any) -> Any:
    """Tool-call arguments as an object for templates; a string that is not one stays as is."""
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return raw
        return parsed if isinstance(parsed, dict) else raw
    return raw if raw is not None else {}


def _template_call(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = _arguments(fn.get("arguments"))
    return {"id": call.get("id") or "", "type": "function",
            "function": {"name": fn.get("name") or "", "arguments": args}}


def _message(msg: dict[str, Any]) -> dict[str, Any]:
    role = msg.get("role") or "user"
    out: dict[str, Any] = {"role": "system" if role == "developer" else role,
                           "content": _text(msg.get("content"))}
    calls = msg.get("tool_calls") if role == "assistant" else None
    if calls and isinstance(calls, list):  # the key only with calls: Llama 3.1 tests presence
        out["tool_calls"] = [_template_call(c) for c in calls if isinstance(c, dict)]
    if role == "tool":
        out["content"] = out["content"] or ""
        if msg.get("tool_call_id"):
            out["tool_call_id"] = msg["tool_call_id"]
    return out


def prepare(request: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The prompt messages and tools of a request or training example, ready to render.

    Content parts are joined into strings, `developer` becomes `system`, tool-call arguments
    become objects, and the response format becomes an instruction in the system turn.
    """
    messages = [_message(m) for m in request.get("messages") or [] if isinstance(m, dict)]
    instruction = format_instruction(request.get("response_format"))
    if instruction:
        if messages and messages[0]["role"] == "system":
            base = messages[0]["content"] or ""
            messages[0]["content"] = f"{base}\n\n{instruction}" if base else instruction
        else:
            messages.insert(0, {"role": "system", "content": instruction})
    tools = [t for t in request.get("tools") or [] if isinstance(t, dict)]
    return messages, tools or None


def answer_message(example: dict[str, Any]) -> dict[str, Any]:
    """The teacher's answer of a training example, as a message to render."""
    return _message({**(example.get("answer") or {}), "role": "assistant"})


Messages = list[dict[str, Any]]


def conversation(example: dict[str, Any]) -> tuple[Messages, Messages | None]:
    """Prompt messages plus the answer: the whole training conversation, and its tools."""
    messages, tools = prepare(example)
    return [*messages, answer_message(example)], tools


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # Same as transformers' filter, so `render` and `apply_chat_template` agree to the byte.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


@lru_cache(maxsize=1)
def _compiled() -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = _tojson
    return env.from_string(CHAT_TEMPLATE)


def render(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None, *,
           add_generation_prompt: bool = False) -> str:
    """CHAT_TEMPLATE rendered without transformers (tokenizer training, token estimates)."""
    return str(_compiled().render(messages=messages, tools=tools,
                                  add_generation_prompt=add_generation_prompt))


def prompt_text(tokenizer: Any, request: dict[str, Any]) -> str:
    """The generation prompt of a request in the tokenizer's own chat template."""
    messages, tools = prepare(request)
    return str(tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                             tokenize=False))


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """Token ids that end an answer: eos, the generation config's eos ids, `<|im_end|>`."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    eos = getattr(generation_config, "eos_token_id", None)
    for i in eos if isinstance(eos, list) else [eos]:
        if i is not None:
            ids.add(int(i))
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return ids


def offered_tools(request: dict[str, Any]) -> set[str]:
    """Functions the request offers (none when `tool_choice` is "none")."""
    if request.get("tool_choice") == "none":
        return set()
    names = set()
    for tool in request.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.add(fn["name"])
    return names


def _call(obj: Any) -> dict[str, Any] | None:
    """One OpenAI tool call from a decoded {"name", "arguments"} object, or None."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return {"id": f"call_{secrets.token_hex(12)}", "type": "function",
            "function": {"name": obj["name"],
                         "arguments": json.dumps(args, ensure_ascii=False, separators=(",", ":"))}}


def _hermes_calls(text: str) -> list[dict[str, Any]] | None:
    tail = text[text.rfind(TOOL_CALL_CLOSE):] if TOOL_CALL_CLOSE in text else text
    if TOOL_CALL_OPEN in tail:  # an unclosed block: cut off or malformed
        return None
    calls = []
    for block in _BLOCK.findall(text):
        try:
            call = _call(json.loads(block))
        except ValueError:
            return None
        if call is None:
            return None
        calls.append(call)
    return calls or None


def _bare_calls(text: str, names: set[str]) -> list[dict[str, Any]] | None:
    """A whole answer that is a {"name", "arguments"} object (or a list of them) for known tools."""
    if not text.startswith(("{", "[")):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    items = data if isinstance(data, list) else [data]
    if not items or not all(
        isinstance(i, dict) and i.get("name") in names and set(i) <= {"name", "arguments",
                                                                      "parameters"}
        for i in items
    ):
        return None
    calls = [_call(i) for i in items]
    return None if any(c is None for c in calls) else calls  # type: ignore[return-value]


def parse_answer(text: str, request: dict[str, Any]) -> dict[str, Any]:
    """The assistant message a student's raw text stands for. Never raises.

    Tool calls when the request offers tools and the text holds Hermes blocks (or is a bare
    {"name", "arguments"} object for an offered tool); otherwise the stripped text as content.
    Malformed tool JSON stays content, so the request's contract check rejects it.
    """
    try:
        text = text if isinstance(text, str) else str(text)
        text = _THINK.sub("", text.split(IM_END, 1)[0], count=1).strip()
        names = offered_tools(request) if isinstance(request, dict) else set()
        if names:
            if TOOL_CALL_OPEN in text:
                calls = _hermes_calls(text)
                if calls:
                    before = text[: text.find(TOOL_CALL_OPEN)].strip()
                    return {"role": "assistant", "content": before or None, "tool_calls": calls}
            else:
                calls = _bare_calls(text, names)
                if calls:
                    return {"role": "assistant", "content": None, "tool_calls": calls}
        return {"role": "assistant", "content": text}
    except Exception:  # garbage in must never take the request path down
        return {"role": "assistant", "content": str(text)}


_PROBE_TOOL = {"type": "function", "function": {"name": "probe_tool", "parameters": {
    "type": "object", "properties": {"x": {"type": "string"}}}}}
_PROBE_CALL = {"role": "assistant", "content": None, "tool_calls": [{
    "id": "c1", "type": "function", "function": {"name": "probe_tool", "arguments": '{"x": "1"}'}}]}


def renders_hermes_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's own chat template shows tools and writes tool calls the
    Hermes way (`<tool_call>{"name": …}</tool_call>`), as the students' format needs."""
    if not tokenizer.chat_template:
        return False
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, _PROBE_CALL], tools=[_PROBE_TOOL],
            tokenize=False)
    except Exception:  # a template that cannot render tools or tool calls at all
        return False
    return isinstance(text, str) and "<tool_call>" in text and text.count("probe_tool") >= 2
