"""Constrained decoding: whatever a model's logits say, a finished answer honours the request.

Property-based: hypothesis draws tool sets, parameter schemas, `tool_choice` and response
formats, and random logits stand for a model that knows nothing; every answer that ends is
checked by the gateway's own contract check. Then the real tiny Llama, batched, through
`Student.generate`.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.constrain import answer_grammar, open_to_placeholders, placeholders
from policies.contract import check_contract
from tests.helpers_students import CITY_WEATHER, tool_and_json_examples

pytest.importorskip("llguidance")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAMES = ["get_weather", "book_room", "send_mail", "lookup_order"]
PROPS = ["city", "date", "count", "urgent", "level", "who"]
LEAF = st.one_of(
    st.just({"type": "string"}),
    st.just({"type": "integer", "minimum": 0, "maximum": 99}),
    st.just({"type": "boolean"}),
    st.lists(st.sampled_from(["low", "mid", "high", "x y"]), min_size=1, max_size=3,
             unique=True).map(lambda e: {"type": "string", "enum": e}),
    st.just({"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}),
)


@st.composite
def objects(draw: Any) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(PROPS), min_size=1, max_size=3, unique=True))
    props = {k: draw(LEAF) for k in keys}
    required = draw(st.lists(st.sampled_from(keys), unique=True))
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": draw(st.booleans())}


@st.composite
def requests(draw: Any) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=0, max_size=3, unique=True))
    req: dict[str, Any] = {"messages": [{"role": "user", "content": draw(st.sampled_from(
        ["Weather in Paris?", "Book it for <V1> with <V2>", "hello"]))}]}
    if names:
        req["tools"] = [{"type": "function", "function": {"name": n, "parameters": draw(objects())}}
                        for n in names]
        req["tool_choice"] = draw(st.sampled_from(
            ["auto", "none", "required", {"type": "function", "function": {"name": names[0]}}]))
        req["parallel_tool_calls"] = draw(st.booleans())
    fmt = draw(st.sampled_from(["none", "json_object", "json_schema"]))
    if fmt == "json_object":
        req["response_format"] = {"type": "json_object"}
    elif fmt == "json_schema":
        req["response_format"] = {"type": "json_schema",
                                  "json_schema": {"name": "out", "schema": draw(objects())}}
    return req


@pytest.fixture(scope="module")
def constrainer() -> Any:
    from distill.chat_format import conversation, render, stop_token_ids
    from distill.constrained import Constrainer
    from distill.scratch import train_tokenizer

    texts = [render(*conversation(ex)) for ex in tool_and_json_examples()]
    tok = train_tokenizer(texts, vocab_size=600)
    return Constrainer(tok, stop_token_ids(tok)), tok


def random_answer(constrainer: Any, request: dict[str, Any], seed: int,
                  steps: int = 400) -> tuple[str, bool]:
    """Greedy decoding of random logits under the request's grammar: (text, finished).

    Stop tokens get a head start, as in any model trained to end its answers; the grammar
    allows them only where the answer may end, so this shortens answers, never breaks one.
    """
    import torch

    from distill.constrained import GrammarLogitsProcessor

    con, tok = constrainer
    matcher = con.matcher(request)
    assert matcher is not None
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros((1, 1), dtype=torch.long)
    proc = GrammarLogitsProcessor([matcher], con.tokenizer.vocab_size, 1, con.stop_ids)
    for _ in range(steps):
        noise = torch.randn((1, len(tok)), generator=gen)
        noise[0, con.stop_ids] += 2.5
        scores = proc(ids, noise)
        nxt = int(scores.argmax())
        if nxt in con.stop_ids:
            return tok.decode(ids[0, 1:].tolist()), True
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return tok.decode(ids[0, 1:].tolist()), False


def answer(text: str, request: dict[str, Any]) -> dict[str, Any]:
    from distill.chat_format import parse_answer

    return parse_answer(text, request)


# Found by the property below: noise wrote `309E71388` (infinity to every client) as an extra
# argument's value (`additionalProperties: true`), and the answer came back not JSON.
FOUND_OVERFLOW = {
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": [],
        "additionalProperties": True}}}],
    "tool_choice": "auto", "parallel_tool_calls": False,
    "response_format": {"type": "json_object"}}
FOUND_OVERFLOW_TEXT = ('<tool_call>\n{"name": "get_weather", "arguments": {"\u070c siDakar\u3812'
                       'Anrin\u930c\u012bolNameU:ryarLimaargumentsstemsy\uf108></8\u448c\u0562 '
                       'Osloser Rome\u0511": 309E71388}}\n</tool_call>')


@given(request=requests(), seed=st.integers(0, 2**31))
@example(request=FOUND_OVERFLOW, seed=563793)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
def test_a_finished_constrained_answer_always_honours_the_contract(
    constrainer: Any, request: dict[str, Any], seed: int
) -> None:
    if answer_grammar(request) is None:
        return  # free text allowed: nothing to constrain
    text, finished = random_answer(constrainer, request, seed)
    if not finished:
        return  # cut at the token cap: the gateway falls back ("length"); checked below
    message = answer(text, request)
    violation = check_contract(request, message)
    if violation and placeholders(request):
        # With placeholders in the request, pattern- and enum-held strings are opened to
        # them (a copied value may sit there), so only those values can still be wrong;
        # tools, tool_choice and JSON shape never can.
        assert violation.code in ("bad_arguments", "invalid_json"), (text, violation)
        assert "not valid JSON" not in violation.message and "not a JSON object" not in \
            violation.message, (text, violation)
        return
    assert violation is None, (text, violation)


def test_random_logits_mostly_finish_so_the_property_is_not_vacuous(constrainer: Any) -> None:
    req = {"messages": [{"role": "user", "content": "x"}], "tools": [CITY_WEATHER],
           "tool_choice": "required"}
    finished = [random_answer(constrainer, req, seed)[1] for seed in range(12)]
    assert sum(finished) >= 8


@pytest.mark.parametrize("seed", range(6))
def test_named_tool_choice_and_none_are_obeyed_even_by_noise(constrainer: Any, seed: int) -> None:
    tools = [CITY_WEATHER, {"type": "function", "function": {
        "name": "send_mail", "parameters": {"type": "object", "properties": {}}}}]
    base = {"messages": [{"role": "user", "content": "x"}], "tools": tools}
    named = {**base, "tool_choice": {"type": "function", "function": {"name": "send_mail"}}}
    text, _ = random_answer(constrainer, named, seed)
    assert text.startswith('<tool_call>\n{"name": "send_mail", "arguments": {')
    none = {**base, "tool_choice": "none", "response_format": {"type": "json_object"}}
    text, finished = random_answer(constrainer, none, seed)
    assert "<tool_call>" not in text and text.lstrip().startswith("{")
    if finished:
        assert check_contract(none, answer(text, none)) is None


def accepts(constrainer: Any, request: dict[str, Any], text: str) -> bool:
    con, tok = constrainer
    m = con.matcher(request)
    ids = con.tokenizer.tokenize_str(text)
    return m.try_consume_tokens(ids) == len(ids) and m.is_accepting()


def test_placeholders_of_the_request_may_stand_for_copied_strings(constrainer: Any) -> None:
    schema = {"type": "object", "properties": {
        "level": {"type": "string", "enum": ["low", "high"]},
        "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}},
        "required": ["level", "date"], "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "o", "schema": schema}}
    slotted = {"messages": [{"role": "user", "content": "on <V1>, level <V2>"}],
               "response_format": fmt}
    plain = {"messages": [{"role": "user", "content": "on 2024-05-01, level high"}],
             "response_format": fmt}
    assert accepts(constrainer, slotted, '{"level": "<V2>", "date": "<V1>"}')
    assert accepts(constrainer, slotted, '{"level": "high", "date": "from <V1>"}')
    assert not accepts(constrainer, slotted, '{"level": "<V3>", "date": "<V1>"}')  # not asked
    assert not accepts(constrainer, plain, '{"level": "<V2>", "date": "2024-05-01"}')
    assert not accepts(constrainer, plain, '{"level": "high", "date": "May 1st"}')
    assert accepts(constrainer, plain, '{"level": "high", "date": "2024-05-01"}')
    assert not accepts(constrainer, plain, '{"level": "medium", "date": "2024-05-01"}')


def test_placeholders_may_stand_for_copied_numbers(constrainer: Any) -> None:
    """Copy slots replace copied numbers too (an order's quantity); the student writes the
    placeholder as a string and the gateway puts the number back."""
    schema = {"type": "object", "properties": {"qty": {"type": "integer", "minimum": 1}},
              "required": ["qty"], "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "o", "schema": schema}}
    slotted = {"messages": [{"role": "user", "content": "send <V1> boxes"}],
               "response_format": fmt}
    plain = {"messages": [{"role": "user", "content": "send 3 boxes"}], "response_format": fmt}
    assert accepts(constrainer, slotted, '{"qty": "<V1>"}')
    assert accepts(constrainer, slotted, '{"qty": 3}')
    assert not accepts(constrainer, slotted, '{"qty": "<V2>"}')  # not in the request
    assert not accepts(constrainer, slotted, '{"qty": "three"}')
    assert not accepts(constrainer, plain, '{"qty": "<V1>"}')


def test_tool_calls_and_content_follow_the_template_layout(constrainer: Any) -> None:
    req = {"messages": [{"role": "user", "content": "x"}], "tools": [CITY_WEATHER]}
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    assert accepts(constrainer, req, call)
    assert accepts(constrainer, req, call + "\n" + call)  # parallel calls
    assert not accepts(constrainer, {**req, "parallel_tool_calls": False}, call + "\n" + call)
    assert not accepts(constrainer, req, call.replace("get_weather", "get_wether"))
    assert not accepts(constrainer, req, call.replace('{"city": "Oslo"}', '"Oslo"'))
    assert accepts(constrainer, req, "It is sunny.")  # auto: text is an answer too
    for blank in ("\x0b", " \n ", "\x1c\u3000"):  # blank text would be an empty answer
        assert not accepts(constrainer, req, blank)
    assert accepts(constrainer, req, "\x0b ok \n")
    assert not accepts(constrainer, req, "Sure: <tool_call>")
    assert not accepts(constrainer, {**req, "tool_choice": "required"}, "It is sunny.")


def test_requests_that_allow_any_text_get_no_grammar() -> None:
    assert answer_grammar({"messages": []}) is None
    assert answer_grammar({"messages": [], "tools": [CITY_WEATHER], "tool_choice": "none"}) is None
    custom = {"type": "custom", "custom": {"name": "shell"}}
    assert answer_grammar({"messages": [], "tools": [CITY_WEATHER, custom]}) is None
    assert open_to_placeholders({"enum": ["a"]}, []) == {"enum": ["a"]}


def test_student_batch_mixes_constrained_and_free_rows() -> None:
    from distill.chat_format import conversation, render
    from distill.scratch import build_scratch
    from distill.student import Student

    texts = [render(*conversation(ex)) for ex in tool_and_json_examples()]
    model, tok = build_scratch("tiny", texts, seed=2)
    student = Student(model, tok)
    tool_req = {"messages": [{"role": "user", "content": "Weather in Lima?"}],
                "tools": [CITY_WEATHER], "tool_choice": "required", "max_tokens": 60}
    json_req = {"messages": [{"role": "user", "content": "Lima"}], "max_tokens": 60,
                "response_format": {"type": "json_object"}}
    free_req = {"messages": [{"role": "user", "content": "Lima"}], "max_tokens": 8}
    tool_gen, json_gen, free_gen = student.generate([tool_req, json_req, free_req])
    assert tool_gen.text.startswith('<tool_call>\n{"name": "get_weather", "arguments": {')
    assert json_gen.text.lstrip().startswith("{")
    for gen, req in ((tool_gen, tool_req), (json_gen, json_req)):
        assert gen.finish_reason == "length" or check_contract(req, gen.message) is None
    unconstrained = Student(model, tok, constrained=False).generate([free_req])[0]
    assert free_gen.text == unconstrained.text  # a free row is decoded exactly as before


def test_names_and_schemas_with_grammar_syntax_in_them_stay_data(constrainer: Any) -> None:
    name = 'we}ird"na\nme'
    tool = {"type": "function", "function": {
        "name": name, "description": 'a } b " c\n %json {', "parameters": {
            "type": "object", "properties": {"q": {"type": "string", "description": "}}} /x/"}},
            "required": ["q"]}}}
    req = {"messages": [{"role": "user", "content": "x"}], "tools": [tool],
           "tool_choice": "required"}
    call = '<tool_call>\n{"name": %s, "arguments": {"q": "hi"}}\n</tool_call>'
    import json

    assert accepts(constrainer, req, call % json.dumps(name))
    assert not accepts(constrainer, req, call % json.dumps("weird"))


def test_the_overflowing_number_noise_wrote_is_no_longer_admitted(constrainer: Any) -> None:
    assert not accepts(constrainer, FOUND_OVERFLOW, FOUND_OVERFLOW_TEXT)
    assert accepts(constrainer, FOUND_OVERFLOW, FOUND_OVERFLOW_TEXT.replace("309E71388", "309"))
    violation = check_contract(FOUND_OVERFLOW, answer(FOUND_OVERFLOW_TEXT, FOUND_OVERFLOW))
    assert violation is not None and violation.code == "bad_arguments"  # the checker agrees


OPEN = {"type": "object", "additionalProperties": True}
NUMBER_POSITIONS = {  # where a number may stand → (request, answer text with N for the number)
    "typed number": ({"type": "object", "properties": {"n": {"type": "number"}},
                      "required": ["n"]}, '{"n": N}'),
    "integer with a minimum only": ({"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 1}}, "required": ["n"]}, '{"n": N}'),
    "free property": (OPEN, '{"n": N}'),
    "free, nested": (OPEN, '{"n": [{"m": [N]}]}'),
    "json_object": (None, '{"n": N}'),
}


def _positions() -> list[tuple[str, dict[str, Any], str]]:
    out = []
    for name, (schema, text) in NUMBER_POSITIONS.items():
        fmt = {"type": "json_object"} if schema is None else {
            "type": "json_schema", "json_schema": {"name": "o", "schema": schema}}
        out.append((name, {"messages": [{"role": "user", "content": "x"}],
                           "response_format": fmt}, text))
    tool = {"type": "function", "function": {"name": "f", "parameters": OPEN}}
    call = '<tool_call>\n{"name": "f", "arguments": {"n": N}}\n</tool_call>'
    out.append(("tool argument", {"messages": [{"role": "user", "content": "x"}],
                                  "tools": [tool], "tool_choice": "required"}, call))
    return out


@pytest.mark.parametrize("number,admitted", [
    ("0", True), ("7", True), ("-0.5", True), ("9007199254740991", True),
    ("-9007199254740991", True), ("0.000000000000000000000000000001", True),
    ("3.14159265358979323846264338327950288419716939937510", True),  # long fraction: finite
    ("9007199254740992", False), ("12345678901234567890", False),  # long mantissas
    ("1" + "0" * 400, False), ("1e308", False), ("1e309", False), ("-1E400", False),
    ("309E71388", False), ("1e-7", False), ("2E2", False),
])
def test_every_number_the_grammar_admits_is_finite_and_passes_the_check(
        constrainer: Any, number: str, admitted: bool) -> None:
    """Numbers are plain decimals with an integer part within ±(2**53 - 1), the largest
    integer JavaScript reads exactly: no exponent, so none that overflows a double (`1e309`,
    400 digits), which orjson rejects and JSON.parse reads as Infinity. The contract check
    passes all of them (it refuses only what overflows: `1e308` is JSON, just not written)."""
    for where, request, template in _positions():
        if where.startswith("integer") and not (number.isdigit() and int(number) >= 1):
            continue
        text = template.replace("N", number)
        assert accepts(constrainer, request, text) == admitted, (where, number)
        if admitted:
            assert check_contract(request, answer(text, request)) is None, (where, number)


def test_schemas_llguidance_intersects_still_compile_with_bounded_numbers(
        constrainer: Any) -> None:
    schema = {"allOf": [
        {"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]},
        {"type": "object", "properties": {"m": {"type": "integer"}}, "required": ["m"]}]}
    req = {"messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "o", "schema": schema}}}
    assert accepts(constrainer, req, '{"n": 1.5, "m": 2}')
    assert not accepts(constrainer, req, '{"n": 1e309, "m": 2}')
    assert not accepts(constrainer, req, '{"n": 1.5, "m": 12345678901234567890}')
