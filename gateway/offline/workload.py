"""A deterministic, realistic agent workload: six task types with reference teacher answers.

Used by the offline demo, the distillation benchmark and the tests. Five tasks are narrow and
template-derived (a tiny student can learn them from a few hundred examples); `reply_writer`
is open-ended, its wording randomised so that no student can match the teacher. Some inputs
carry PII (e-mail addresses, phone numbers) for the scrubber. Pure Python, seeded; the
phrase tables live in `gateway.offline.workload_vocab`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from gateway.offline.workload_vocab import (
    BRANDS,
    CITIES,
    CODE_WORDS,
    COMPLAINTS,
    DEPARTMENTS,
    ERRORS,
    FIRST_NAMES,
    GENRES,
    GREETINGS,
    GROCERIES,
    INTENTS,
    ISSUE_PHRASES,
    ISSUES,
    LAST_NAMES,
    MAIL_DOMAINS,
    MONTHS,
    ORDER_FILLERS,
    ORDER_OPENERS,
    ORDER_SCHEMA,
    ORDER_SYSTEM,
    PRODUCTS,
    REPLY_ACTIONS,
    REPLY_CLOSINGS,
    REPLY_EMPATHY,
    REPLY_EXTRAS,
    REPLY_OPENINGS,
    REPLY_SIGNATURES,
    REPLY_SYSTEM,
    REVIEW_NEUTRAL_FACTS,
    REVIEW_PHRASES,
    ROOMS,
    ROUTER_SYSTEM,
    SAAS,
    SEASONS,
    SENTIMENT_ASK,
    SENTIMENT_SYSTEM,
    SIGN_OFFS,
    SUBJECTS,
    TICKETS,
    TRAVEL_DONE,
    TRAVEL_PHRASES,
    TRAVEL_SYSTEM,
    TRAVEL_TOOLS,
    TRIAGE_ASK,
    TRIAGE_SYSTEM,
)

KINDS = ("travel_tools", "order_extract", "ticket_triage", "intent_router", "sentiment",
         "reply_writer")
GENERIC_SYSTEM = "You are a helpful assistant."
# Tasks that can put their instruction in the user turn under the generic system prompt.
GENERIC_CAPABLE = ("ticket_triage", "sentiment", "reply_writer")


@dataclass
class WorkItem:
    task: str  # ground-truth task name
    request: dict[str, Any]  # an OpenAI chat.completions body without "model"
    answer: dict[str, Any]  # the teacher's assistant message


def _date(rng: random.Random) -> str:
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    if rng.random() < 0.75:
        return f"2025-{month:02d}-{day:02d}"
    return f"{MONTHS[month - 1]} {day}"


def _email(rng: random.Random, first: str, last: str) -> str:
    user = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.randint(1, 99)}"])
    return f"{user.lower()}@{rng.choice(MAIL_DOMAINS)}"


def _phone(rng: random.Random) -> str:
    return rng.choice([
        f"+1 {rng.randint(200, 989)}-{rng.randint(200, 989)}-{rng.randint(1000, 9999)}",
        f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
        f"({rng.randint(200, 989)}) {rng.randint(200, 989)}-{rng.randint(1000, 9999)}",
    ])


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def _call_id(rng: random.Random) -> str:
    return "call_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16))


def _tool_call(rng: random.Random, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"id": _call_id(rng), "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}


def _assistant(content: str | None = None, calls: list[dict[str, Any]] | None = None
               ) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        msg["tool_calls"] = calls
    return msg


# --- travel_tools: parallel-capable tool selection, arguments copied from the user ---------

def _travel_intent(rng: random.Random) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    city, other = rng.sample(CITIES, 2)
    date = _date(rng)
    nights = rng.randint(1, 9)
    kind = rng.choices(["weather", "flights", "hotel", "flights+weather", "hotel+weather"],
                       weights=[3, 3, 3, 1, 1])[0]
    Call = tuple[str, dict[str, Any]]
    weather: Call = ("get_weather", {"city": city, "date": date})
    flights: Call = ("search_flights", {"origin": other, "destination": city, "date": date})
    hotel: Call = ("book_hotel", {"city": city, "check_in": date, "nights": nights})
    fill = {"city": city, "origin": other, "date": date, "nights": nights}
    text = rng.choice(TRAVEL_PHRASES[kind]).format(**fill)
    calls = {"weather": [weather], "flights": [flights], "hotel": [hotel],
             "flights+weather": [flights, weather], "hotel+weather": [hotel, weather]}[kind]
    return text, calls


def travel_tools(rng: random.Random, generic: bool) -> WorkItem:
    today = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    system = TRAVEL_SYSTEM.format(today=today)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    if rng.random() < 0.3:  # an earlier, finished turn
        text, calls = _travel_intent(rng)
        made = [_tool_call(rng, n, a) for n, a in calls]
        messages += [{"role": "user", "content": text}, _assistant(None, made)]
        for call in made:
            messages.append({"role": "tool", "tool_call_id": call["id"],
                             "content": json.dumps({"status": "ok"})})
        messages.append(_assistant(rng.choice(TRAVEL_DONE)))
    text, calls = _travel_intent(rng)
    messages.append({"role": "user", "content": text})
    request = {"messages": messages, "tools": TRAVEL_TOOLS, "tool_choice": "auto",
               "max_tokens": 256}
    return WorkItem("travel_tools", request,
                    _assistant(None, [_tool_call(rng, n, a) for n, a in calls]))


# --- order_extract: JSON extraction under a json_schema -------------------------------------

def order_extract(rng: random.Random, generic: bool) -> WorkItem:
    first, last = _person(rng)
    name = f"{first} {last}"
    order_id = rng.choice(["A", "B", "C", "D", "K", "W"]) + str(rng.randint(10000, 99999))
    product = rng.choice(PRODUCTS)
    qty = rng.randint(1, 6)
    issue = rng.choice(ISSUES)
    lines = [
        rng.choice(GREETINGS),
        rng.choice(ORDER_OPENERS).format(order_id=order_id, qty=qty, product=product),
        rng.choice(ISSUE_PHRASES[issue]).format(product=product),
    ]
    if rng.random() < 0.5:
        lines.append(rng.choice(ORDER_FILLERS))
    sig = f"{rng.choice(SIGN_OFFS)}\n{name}"
    if rng.random() < 0.6:
        sig += f"\n{_email(rng, first, last)}"
    if rng.random() < 0.4:
        sig += f"\nTel: {_phone(rng)}"
    mail = f"Subject: {rng.choice(SUBJECTS)}\n\n" + " ".join(lines) + "\n\n" + sig
    answer = {"customer_name": name, "order_id": order_id, "product": product,
              "quantity": qty, "issue": issue}
    request = {
        "messages": [{"role": "system", "content": ORDER_SYSTEM},
                     {"role": "user", "content": mail}],
        "response_format": {"type": "json_schema", "json_schema": ORDER_SCHEMA},
        "max_tokens": 200, "temperature": 0,
    }
    return WorkItem("order_extract", request,
                    _assistant(json.dumps(answer, separators=(",", ":"))))


# --- ticket_triage and sentiment: one-label answers ------------------------------------------

def _label_item(task: str, system: str, instruction: str, payload: str, label: str,
                generic: bool) -> WorkItem:
    if generic:
        messages = [{"role": "system", "content": GENERIC_SYSTEM},
                    {"role": "user", "content": f"{instruction}\n\n{payload}"}]
    else:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": payload}]
    return WorkItem(task, {"messages": messages, "max_tokens": 5, "temperature": 0},
                    _assistant(label))


def ticket_triage(rng: random.Random, generic: bool) -> WorkItem:
    label = rng.choice(list(TICKETS))
    first, last = _person(rng)
    amount = f"{rng.randint(5, 400)}.{rng.randint(0, 99):02d}"
    fill = {"product": rng.choice(SAAS), "amount": amount,
            "error": rng.choice(ERRORS), "city": rng.choice(CITIES),
            "days": rng.randint(2, 20), "order_id": str(rng.randint(100000, 999999))}
    body = rng.choice(TICKETS[label]).format(**fill)
    if rng.random() < 0.4:
        body += f" You can reach me at {rng.choice([_email(rng, first, last), _phone(rng)])}."
    if rng.random() < 0.5:
        body += f" - {first}"
    return _label_item("ticket_triage", TRIAGE_SYSTEM, rng.choice(TRIAGE_ASK),
                       f"Ticket: {body}", label, generic)


def sentiment(rng: random.Random, generic: bool) -> WorkItem:
    label = rng.choice(["positive", "negative", "neutral"])
    product = rng.choice(PRODUCTS).lower()
    parts = [p.format(product=product, days=rng.randint(2, 30))
             for p in rng.sample(REVIEW_PHRASES[label], 2)]
    if rng.random() < 0.5:
        parts.insert(rng.randint(0, len(parts)), rng.choice(REVIEW_NEUTRAL_FACTS).format(
            product=product, days=rng.randint(2, 30)))
    stars = {"positive": (4, 5), "negative": (1, 2), "neutral": (3, 3)}[label]
    review = " ".join(parts)
    if rng.random() < 0.3:
        review = f"{rng.randint(*stars)}/5. {review}"
    return _label_item("sentiment", SENTIMENT_SYSTEM, rng.choice(SENTIMENT_ASK),
                       f"Review: {review}", label, generic)


# --- intent_router: json_object routing with slots ------------------------------------------

def _utterance(rng: random.Random) -> tuple[str, dict[str, Any]]:
    intent = rng.choice(list(INTENTS))
    slots: dict[str, Any] = {
        "room": rng.choice(ROOMS), "temperature": rng.randint(16, 26),
        "genre": rng.choice(GENRES), "minutes": rng.choice([1, 2, 3, 5, 10, 15, 20, 25, 30, 45]),
        "item": rng.choice(GROCERIES), "list": rng.choice(["shopping", "grocery", "todo"]),
        "city": rng.choice(CITIES),
    }
    text = rng.choice(INTENTS[intent]["phrases"]).format(**slots)
    used = {k: slots[k] for k in INTENTS[intent]["slots"]}
    return text, {"intent": intent, "slots": used}


def intent_router(rng: random.Random, generic: bool) -> WorkItem:
    messages: list[dict[str, Any]] = [{"role": "system", "content": ROUTER_SYSTEM}]
    if rng.random() < 0.3:
        text, routed = _utterance(rng)
        messages += [{"role": "user", "content": text},
                     _assistant(json.dumps(routed, separators=(",", ":")))]
    text, routed = _utterance(rng)
    if rng.random() < 0.2:
        text = rng.choice(["hey house, ", "ok so ", "um, ", "please "]) + text
    messages.append({"role": "user", "content": text})
    request = {"messages": messages, "response_format": {"type": "json_object"},
               "max_tokens": 100, "temperature": 0}
    return WorkItem("intent_router", request,
                    _assistant(json.dumps(routed, separators=(",", ":"))))


# --- reply_writer: open-ended, deliberately unmatchable wording ------------------------------

def _reply(rng: random.Random, customer: str, brand: str, product: str) -> str:
    """60-120 words: shuffled sentences drawn from pools, with random details."""
    def fill(s: str) -> str:
        return s.format(
            name=customer, brand=brand, product=product, city=rng.choice(CITIES),
            days=rng.randint(2, 10), pct=rng.choice([10, 15, 20, 25]),
            code=f"{rng.choice(CODE_WORDS)}{rng.randint(10, 99)}", agent=rng.choice(FIRST_NAMES),
            dept=rng.choice(DEPARTMENTS), season=rng.choice(SEASONS))

    middle = [fill(rng.choice(REPLY_EMPATHY)), fill(rng.choice(REPLY_ACTIONS))]
    middle += [fill(s) for s in rng.sample(REPLY_EXTRAS, 4)]
    rng.shuffle(middle)
    opening = fill(rng.choice(REPLY_OPENINGS))
    words: list[str] = []
    for sentence in middle:
        if len(words) >= 60 and (len(words) + len(sentence.split()) > 100 or rng.random() < 0.4):
            break
        words += sentence.split()
    closing = fill(rng.choice(REPLY_CLOSINGS))
    signature = fill(rng.choice(REPLY_SIGNATURES))
    return f"{opening}\n\n{' '.join(words)} {closing}\n\n{signature}"


def reply_writer(rng: random.Random, generic: bool) -> WorkItem:
    first, last = _person(rng)
    brand = rng.choice(BRANDS)
    product = rng.choice(PRODUCTS).lower()
    complaint = rng.choice(COMPLAINTS).format(
        product=product, days=rng.randint(2, 14), city=rng.choice(CITIES))
    if rng.random() < 0.5:
        complaint += f" My e-mail is {_email(rng, first, last)}, phone {_phone(rng)}."
    payload = f"Customer {first} {last} wrote:\n\"{complaint}\"\n\nWrite the reply."
    if generic:
        instruction = f"Write a warm customer-service reply of 60-120 words for {brand}."
        messages = [{"role": "system", "content": GENERIC_SYSTEM},
                    {"role": "user", "content": f"{instruction}\n\n{payload}"}]
    else:
        messages = [{"role": "system", "content": REPLY_SYSTEM.format(brand=brand)},
                    {"role": "user", "content": payload}]
    request = {"messages": messages, "max_tokens": 300, "temperature": 0.8}
    return WorkItem("reply_writer", request, _assistant(_reply(rng, first, brand, product)))


GENERATORS: dict[str, Callable[[random.Random, bool], WorkItem]] = {
    "travel_tools": travel_tools, "order_extract": order_extract,
    "ticket_triage": ticket_triage, "intent_router": intent_router,
    "sentiment": sentiment, "reply_writer": reply_writer,
}


def generate(n: int, seed: int = 0, kinds: list[str] | None = None,
             generic: Collection[str] = ()) -> list[WorkItem]:
    """`n` work items, the kinds interleaved in a seeded random order and near-equal shares.

    Kinds named in `generic` use the shared "You are a helpful assistant." system prompt with
    the instruction moved into the user turn, so they share one fingerprint.
    """
    kinds = list(kinds or KINDS)
    unknown = [k for k in [*kinds, *generic] if k not in GENERATORS]
    if unknown:
        raise ValueError(f"Unknown workload kinds {unknown}; known: {list(GENERATORS)}.")
    bad = [k for k in generic if k not in GENERIC_CAPABLE]
    if bad:
        raise ValueError(f"Kinds {bad} cannot use the generic prompt; these can: "
                         f"{list(GENERIC_CAPABLE)}.")
    rng = random.Random(seed)
    order = [kinds[i % len(kinds)] for i in range(n)]
    rng.shuffle(order)
    return [GENERATORS[k](rng, k in generic) for k in order]


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)  # estimate: ~4 characters per token


def to_traces(items: Iterable[WorkItem], model: str = "gpt-4o-mini") -> Iterator[dict[str, Any]]:
    """JSONL trace lines {"request", "response"} as the teacher would have answered."""
    for i, item in enumerate(items):
        request = {"model": model, **item.request}
        prompt = _tokens(json.dumps(item.request["messages"]) + json.dumps(
            item.request.get("tools") or ""))
        answer = item.answer.get("content") or json.dumps(item.answer.get("tool_calls"))
        completion = _tokens(answer)
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        yield {"request": request, "response": {
            "id": f"chatcmpl-{digest[:24]}", "object": "chat.completion",
            "created": 1_750_000_000 + i, "model": model,
            "choices": [{"index": 0, "message": item.answer, "logprobs": None,
                         "finish_reason": "tool_calls" if item.answer.get("tool_calls")
                         else "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }}
