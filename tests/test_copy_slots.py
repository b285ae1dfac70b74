"""Copy slots at serving time: what the proposer takes, what the student sees, what comes back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.copy_slots import CopySlots, SlotLeak, Slots
from gateway.privacy.scrub import ScrubConfig
from gateway.students import StudentAsTrained
from gateway.upstream.base import UpstreamFailure


def ask(text: str, system: str = "You book meetings.") -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "system", "content": system},
                                       {"role": "user", "content": text}]}


def test_the_proposer_takes_ids_dates_times_and_names_but_not_a_sentence_opening() -> None:
    found = CopySlots().propose(
        "Book a call with Maria Lopez on 2025-03-14 at 3:30 pm about order K88412 (2 seats).")
    assert found == ["Maria Lopez", "2025-03-14", "3:30 pm", "K88412", "2"]
    assert "Book" not in found
    assert CopySlots().propose("Flights on March 4 from Oslo") == ["March 4", "Oslo"]


def test_a_lowercase_value_is_taken_only_once_the_gazetteer_knows_it() -> None:
    text = "Schedule quarterly goals with Ann on 2025-05-02"
    assert "quarterly goals" not in CopySlots().propose(text)
    assert "quarterly goals" in CopySlots(gazetteer=["quarterly goals"]).propose(text)


def test_pii_placeholders_are_never_cut_into_slots() -> None:
    assert CopySlots().propose("Mail <EMAIL_1> about A123") == ["A123"]


def test_values_are_numbered_by_first_appearance_and_restored_with_their_json_types() -> None:
    slots = CopySlots(numeric_fields=["call:book/nights"])
    request = ask("Book Paris from 2025-06-01 for 3 nights, Paris again if full")
    s = Slots(slots, request)
    sent = s.delex_request(request)
    assert (sent["messages"][1]["content"]
            == "Book <V1> from <V2> for <V3> nights, <V1> again if full")
    assert sent["messages"][0] == request["messages"][0]  # the system prompt is left alone
    answer = {"role": "assistant", "content": None, "tool_calls": [{
        "id": "c1", "type": "function",
        "function": {"name": "book",
                     "arguments": '{"city":"<V1>","from":"<V2>","nights":"<V3>"}'}}]}
    restored = s.restore_message(answer)
    args = json.loads(restored["tool_calls"][0]["function"]["arguments"])
    assert args == {"city": "Paris", "from": "2025-06-01", "nights": 3}


def test_a_placeholder_the_request_never_had_is_a_leak() -> None:
    s = Slots(CopySlots(), ask("Call Bob at 9:15"))
    with pytest.raises(SlotLeak):
        s.restore_message({"role": "assistant", "content": "Calling <V7>"})
    # a request that itself contains our marker is left as it is, and so is its echo
    s = Slots(CopySlots(), ask("What does <V1> mean in Order A123?"))
    assert not s
    assert s.restore_message({"role": "assistant", "content": "<V1> is"})["content"] == "<V1> is"


class Echo:
    """A student that answers with the first copy slot as a JSON id (or a fixed reply)."""

    name = "echo"

    def __init__(self, reply: str | None = None) -> None:
        self.seen: list[dict[str, Any]] = []
        self.reply = reply

    async def complete(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(body)
        reply = self.reply or json.dumps({"id": "<V1>"})
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                             "finish_reason": "stop"}]}

    async def aclose(self) -> None:
        pass


async def test_the_student_sees_placeholders_and_the_client_gets_the_values_back() -> None:
    inner = Echo()
    student = StudentAsTrained(inner, ScrubConfig(), CopySlots())  # type: ignore[arg-type]
    resp = await student.complete("chat/completions",
                                  ask("Refund order K88412 for jane.doe@example.com"))
    asked = inner.seen[0]["messages"][-1]["content"]
    assert "K88412" not in asked and "<V1>" in asked and "<EMAIL_1>" in asked
    assert json.loads(resp["choices"][0]["message"]["content"])["id"] == "K88412"


async def test_an_unrestorable_slot_fails_the_student_so_the_teacher_answers() -> None:
    student = StudentAsTrained(Echo(reply='{"id": "<V4>"}'), None,  # type: ignore[arg-type]
                               CopySlots())
    with pytest.raises(UpstreamFailure):
        await student.complete("chat/completions", ask("Refund order K88412"))


async def test_the_pool_serves_a_registered_student_through_the_copy_slots_it_was_trained_with(
    tmp_path: Any,
) -> None:
    import aiohttp

    from gateway.config import parse_config
    from gateway.students import StudentPool

    cfg = parse_config({"distill": {"students_dir": str(tmp_path), "scrub_kinds": []}})
    version = tmp_path / "t-orders" / "v1"
    version.mkdir(parents=True)
    (version / "slimgate.json").write_text(json.dumps({"kind": "generative", "copy_slots": {
        "enabled": True, "gazetteer": ["blue kettle"], "numeric_fields": [], "patterns": True}}))
    inner = Echo(reply='{"product": "<V1>", "id": "<V2>"}')
    async with aiohttp.ClientSession() as session:
        pool = StudentPool(cfg, session, factory=lambda task, v: inner)  # type: ignore[arg-type]
        student = pool.get("t-orders", 1)
        assert student is not None
        resp = await student.complete("chat/completions", ask("my blue kettle from W12345"))
    assert json.loads(resp["choices"][0]["message"]["content"]) == {
        "product": "blue kettle", "id": "W12345"}
    assert inner.seen[0]["messages"][-1]["content"] == "my <V1> from <V2>"


# --- adjacent values: each stays one whole value, and two values never become one ----------

def test_a_date_directly_followed_by_a_time_is_two_whole_values() -> None:
    text = "Book the design review for 2026-06-20 11:30 with Eli, Mateo and Omar."
    assert CopySlots().propose(text) == ["2026-06-20", "11:30", "Eli", "Mateo", "Omar"]
    # A time the task's answers copied before is claimed first: the date must stay whole.
    assert CopySlots(gazetteer=["11:30", "Omar"]).propose(text)[:2] == ["2026-06-20", "11:30"]
    assert CopySlots().propose("table on 1/20/2023 at 7:15 pm") == ["1/20/2023", "7:15 pm"]


def test_an_amount_glued_to_its_currency_is_two_values() -> None:
    assert CopySlots().propose("Refund 45.50USD to Ann") == ["45.50", "USD", "Ann"]
    assert CopySlots().propose("Wire USD1,200.50 today") == ["USD", "1,200.50"]
    assert CopySlots().propose("Send 1,200.50 EUR") == ["1,200.50", "EUR"]


def test_a_name_and_its_title_are_whole_and_apart() -> None:
    assert CopySlots().propose("Invite Maria Lopez CFO to the review") == ["Maria Lopez", "CFO"]
    assert "Maria Lopez" in CopySlots().propose("Call Dr. Maria Lopez tomorrow")
    assert CopySlots().propose("Ship it to Washington DC") == ["Washington", "DC"]
    assert CopySlots().propose("Ask Bank of America") == ["Bank of America"]


def test_list_items_are_neither_merged_nor_split() -> None:
    assert CopySlots().propose("Attendees: Eli, Mateo and Omar") == ["Eli", "Mateo", "Omar"]
    assert CopySlots().propose("Eli, Mateo and Omar will join") == ["Eli", "Mateo", "Omar"]
    assert CopySlots().propose("Reserve seats 3,4 and 5") == ["3", "4", "5"]
    assert CopySlots().propose("mail mia.garcia2723@example.com, bob@x.org") == [
        "mia.garcia2723@example.com", "bob@x.org"]
    # apostrophes are no quotes: nothing between "I'm" and "I'd" is one value
    assert CopySlots().propose("I'm going to Paris soon and I'd like a table") == ["Paris"]
