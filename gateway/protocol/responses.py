"""Responses API wire types (pydantic v2), after OpenAI's reference and openai-python's
`openai/types/responses`.

Like `gateway.protocol.openai`, these validate what a client sends and document it; the
gateway keeps the client's own dict, so unknown fields (and unknown item and tool types,
which a native upstream may understand) pass through untouched. slimgate's extensions are
fenced off at the bottom of the request model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag


class _Open(BaseModel):
    # strict, as in gateway/protocol/openai.py: "stream": "false" is a 400, not a truthy string
    model_config = ConfigDict(extra="allow", strict=True)


# --- input items --------------------------------------------------------------------------
# Items are validated by their `type`; a message may omit it (OpenAI's EasyInputMessage).


class InputMessage(_Open):
    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[dict[str, Any]]
    id: str | None = None
    status: str | None = None


class FunctionCallItem(_Open):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(_Open):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[dict[str, Any]]
    id: str | None = None
    status: str | None = None


class OtherItem(_Open):
    """Reasoning, item references, hosted-tool calls: forwarded to a native upstream."""

    type: str




def _tag(prefix: str, known: tuple[str, ...], default: str | None = None) -> Any:
    """A discriminator on `type` whose tags read `prefix:type` (kept out of error params)."""

    def pick(v: Any) -> str:
        t = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
        t = default if t is None else t
        return f"{prefix}:{t if t in known else 'other'}"

    return Discriminator(pick)


InputItem = Annotated[
    Annotated[InputMessage, Tag("item:message")]
    | Annotated[FunctionCallItem, Tag("item:function_call")]
    | Annotated[FunctionCallOutputItem, Tag("item:function_call_output")]
    | Annotated[OtherItem, Tag("item:other")],
    _tag("item", ("message", "function_call", "function_call_output"), default="message"),
]


# --- tools and text formats -----------------------------------------------------------------


class FunctionTool(_Open):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class OtherTool(_Open):
    """web_search, file_search, mcp, ...: served only by a native upstream."""

    type: str


Tool = Annotated[
    Annotated[FunctionTool, Tag("tool:function")] | Annotated[OtherTool, Tag("tool:other")],
    _tag("tool", ("function",)),
]


class TextFormatText(_Open):
    type: Literal["text"]


class TextFormatJSONObject(_Open):
    type: Literal["json_object"]


class TextFormatJSONSchema(_Open):
    type: Literal["json_schema"]
    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[
    Annotated[TextFormatText, Tag("format:text")]
    | Annotated[TextFormatJSONObject, Tag("format:json_object")]
    | Annotated[TextFormatJSONSchema, Tag("format:json_schema")],
    _tag("format", ("text", "json_object", "json_schema")),
]


class TextConfig(_Open):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ToolChoiceFunction(_Open):
    type: Literal["function"]
    name: str


class ToolChoiceOther(_Open):
    type: str


ToolChoice = Annotated[
    Annotated[ToolChoiceFunction, Tag("choice:function")]
    | Annotated[ToolChoiceOther, Tag("choice:other")],
    _tag("choice", ("function",)),
]


# --- the request -----------------------------------------------------------------------------


class ResponsesRequest(_Open):
    model: str = Field(min_length=1)
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    metadata: dict[str, str] | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    stream: bool | None = False
    reasoning: dict[str, Any] | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = None
    service_tier: str | None = None
    # --- slimgate extensions ---
    # `metadata.task` names the task explicitly (like the X-Slimgate-Task header);
    # it is removed before the request goes upstream.


class InputItemsQuery(BaseModel):
    """Query of `GET /v1/responses/{id}/input_items`."""

    model_config = ConfigDict(extra="forbid")
    after: str | None = None
    limit: int = Field(20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
