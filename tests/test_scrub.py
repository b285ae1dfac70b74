"""Scrubbing: planted secrets and PII leave, placeholders stay consistent, look-alikes stay."""

from __future__ import annotations

import json

import orjson
import pytest

from gateway.privacy.scrub import (
    KINDS,
    ScrubConfig,
    iban_ok,
    luhn_ok,
    scrub_exchange,
    scrub_text,
    scrub_texts,
)

CARD = "4111 1111 1111 1111"  # Luhn-valid test Visa
IBAN = "DE89 3704 0044 0532 0130 00"  # the standard valid example (mod-97 = 1)
PLANTED = {
    "email": "jane.doe@example.com",
    "phone": "+44 20 7946 0958",
    "card": CARD,
    "iban": IBAN,
    "ip": "203.0.113.77",
    "api_key": "sk-ant-api03-Zx81KqLmNoPqRsTuVwXy12345",
    "bearer": "eyQ9f8s7d6f5g4h3j2k1",
    "person": "Jane Doe",
}
PROMPT = (
    f"My name is {PLANTED['person']}. Write to {PLANTED['email']} or call {PLANTED['phone']}.\n"
    f"Refund card {PLANTED['card']} into {PLANTED['iban']}. Login came from {PLANTED['ip']} "
    f"and 2001:db8:85a3::8a2e:370:7334.\nOur key is {PLANTED['api_key']}; the header was "
    f"Authorization: Bearer {PLANTED['bearer']}\nAlso AKIAIOSFODNN7EXAMPLE, "
    "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8, xoxb-123456789012-abcdefABCDEF and "
    "token=9f8e7d6c5b4a39281706f5e4.\nThanks,\nJane Doe"
)


def _luhn_fix(prefix15: str) -> str:
    """A 16-digit number with the Luhn check digit."""
    return next(prefix15 + d for d in "0123456789" if luhn_ok(prefix15 + d))


def _chat(user: str, answer: str | None = None, **answer_fields: object) -> tuple[dict, dict]:
    req = {"messages": [{"role": "system", "content": "You help customers."},
                        {"role": "user", "content": user}],
           "tools": None, "response_format": None}
    ans = {"role": "assistant", "content": answer, **answer_fields}
    return req, ans


def test_every_planted_kind_is_removed_and_counted() -> None:
    out, counts = scrub_text(PROMPT)
    for kind, value in PLANTED.items():
        assert value not in out, kind
    for leftover in ("2001:db8", "AKIAIOSFODNN7EXAMPLE", "ghp_A1b2", "xoxb-", "9f8e7d6c5b4a"):
        assert leftover not in out
    assert set(counts) == set(KINDS)
    assert "<EMAIL_1>" in out and "<CARD_1>" in out and "<IBAN_1>" in out
    assert "Authorization: Bearer <TOKEN_1>" in out
    assert out.endswith("Thanks,\n<PERSON_1>")  # the signature is the same person


def test_same_value_gets_the_same_placeholder_across_the_exchange() -> None:
    req, ans = _chat(
        "I am Bob. My name is Ana Lima; mail ana@corp.io and copy bob@corp.io.",
        "Dear Ana, I wrote to ana@corp.io (cc bob@corp.io). Regards",
    )
    new_req, new_ans, counts = scrub_exchange(req, ans, ScrubConfig())
    user = new_req["messages"][1]["content"]
    assert user == "I am Bob. My name is <PERSON_1>; mail <EMAIL_1> and copy <EMAIL_2>."
    # "Ana" alone in the answer is the same person: found once, replaced everywhere
    assert new_ans["content"] == "Dear <PERSON_1>, I wrote to <EMAIL_1> (cc <EMAIL_2>). Regards"
    assert counts["email"] == 4 and counts["person"] == 2


def test_tool_call_arguments_are_scrubbed_inside_their_json() -> None:
    args = json.dumps({"to": "ana@corp.io", "card": CARD, "note": "call +1 (555) 010-4477"},
                      indent=2)
    req, ans = _chat("Send my receipt to ana@corp.io",
                     tool_calls=[{"id": "call_1", "type": "function",
                                  "function": {"name": "send", "arguments": args}}])
    _, new_ans, _ = scrub_exchange(req, ans)
    new_args = new_ans["tool_calls"][0]["function"]["arguments"]
    assert json.loads(new_args) == {"to": "<EMAIL_1>", "card": "<CARD_1>",
                                    "note": "call <PHONE_1>"}
    assert new_args.count("\n") == args.count("\n")  # the teacher's formatting is kept
    assert new_ans["tool_calls"][0]["function"]["name"] == "send"


def test_json_answer_keeps_its_structure() -> None:
    answer = json.dumps({"customer": {"full_name": "María José Núñez", "email": "mj@x.es"},
                         "items": [{"sku": "A-1", "qty": 2}], "ip": "198.51.100.4",
                         "note": "Hola María, pedido 1234-5678"}, ensure_ascii=False, indent=1)
    req, ans = _chat("Extract the order as JSON", answer)
    _, new_ans, counts = scrub_exchange(req, ans)
    data = json.loads(new_ans["content"])
    assert data == {"customer": {"full_name": "<PERSON_1>", "email": "<EMAIL_1>"},
                    "items": [{"sku": "A-1", "qty": 2}], "ip": "<IP_1>",
                    "note": "Hola <PERSON_1>, pedido 1234-5678"}
    assert counts["person"] == 2


def test_value_outside_a_json_string_does_not_break_the_json() -> None:
    digits = "4111111111111111"
    text = json.dumps({"card": digits, "raw": int(digits)})
    out, _ = scrub_text(text)
    assert json.loads(out) == {"card": "<CARD_1>", "raw": int(digits)}


def test_card_needs_luhn_and_a_card_shape() -> None:
    valid = _luhn_fix("453201511283036")
    invalid = valid[:-1] + str((int(valid[-1]) + 1) % 10)
    assert luhn_ok(valid) and not luhn_ok(invalid)
    text = (f"card {valid}, id {invalid}, order 1234-5678, ref 1234 5678 9012, "
            f"timestamp 1700000000000, dashed {valid[:4]}-{valid[4:8]}-{valid[8:12]}-{valid[12:]}")
    out, counts = scrub_text(text)
    assert valid not in out and f"id {invalid}," in out
    assert "order 1234-5678" in out and "ref 1234 5678 9012" in out
    assert "timestamp 1700000000000" in out
    assert out.count("<CARD_1>") == 2 and counts["card"] == 2  # one card, two spellings


def test_iban_needs_mod97() -> None:
    wrong = IBAN.replace("3704", "3705")
    assert iban_ok(IBAN) and not iban_ok(wrong)
    out, _ = scrub_text(f"pay {IBAN} EUR, not {wrong}; also GB82WEST12345698765432.")
    assert out == f"pay <IBAN_1> EUR, not {wrong}; also <IBAN_2>."


def test_ip_addresses_and_look_alikes() -> None:
    out, _ = scrub_text("from 192.168.1.20 and fe80::1ff:fe23:4567:890a; at 12:30:45, "
                        "version v1.2.3.4, mac 00:1A:2B:3C:4D:5E, bind 0.0.0.0 or ::1, "
                        "std::vector, 999.1.1.1")
    assert out == ("from <IP_1> and <IP_2>; at 12:30:45, version v1.2.3.4, "
                   "mac 00:1A:2B:3C:4D:5E, bind 0.0.0.0 or ::1, std::vector, 999.1.1.1")


def test_phone_shapes_and_plain_numbers() -> None:
    out, _ = scrub_text("call (555) 867-5309 or 555.867.5309, mobile: 07700900123; "
                        "invoice 2024-001-7788, zip 90210, order 1234-5678")
    assert out == ("call <PHONE_1> or <PHONE_1>, mobile: <PHONE_2>; "
                   "invoice 2024-001-7788, zip 90210, order 1234-5678")


def test_secrets_after_names_but_not_ordinary_words() -> None:
    out, _ = scrub_text(
        'password: hunter22\nDB_PASSWORD="correct-horse-battery"\n"api_key": "a1b2c3d4e5"\n'
        "key points: revenue grew; max_tokens: 4096; token: none; password: required\n"
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----"
    )
    assert out == ('password: <API_KEY_1>\nDB_PASSWORD="<API_KEY_2>"\n"api_key": "<API_KEY_3>"\n'
                   "key points: revenue grew; max_tokens: 4096; token: none; password: required\n"
                   "<API_KEY_4>")


def test_names_only_in_clear_contexts() -> None:
    text = ("Dear Sir or Madam,\nSummarize the Apache Kafka docs for Paris users.\n"
            "Name: Olusegun Obasanjo\nDr. Wei Zhang will review. This is Priya Nair from Acme.\n"
            "From: Tom O'Brien <t@x.io>\nBest,\nThe Team")
    out, counts = scrub_text(text, ScrubConfig(kinds=frozenset({"person"})))
    assert out == ("Dear Sir or Madam,\nSummarize the Apache Kafka docs for Paris users.\n"
                   "Name: <PERSON_1>\nDr. <PERSON_2> will review. This is <PERSON_3> from Acme.\n"
                   "From: <PERSON_4> <t@x.io>\nBest,\nThe Team")
    assert counts["person"] == 4


def test_kinds_can_be_chosen() -> None:
    out, counts = scrub_text(PROMPT, ScrubConfig(kinds=frozenset({"email", "ip"})))
    assert PLANTED["email"] not in out and PLANTED["ip"] not in out
    assert PLANTED["card"] in out and PLANTED["person"] in out
    assert set(counts) == {"email", "ip"}
    with pytest.raises(ValueError, match="unknown scrub kind.*emails"):
        ScrubConfig(kinds=frozenset({"emails"}))


def test_content_parts_scrubbed_and_inputs_untouched() -> None:
    req = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "mail ana@corp.io"},
        {"type": "image_url", "image_url": {"url": "https://img.example/ana@corp.io.png"}},
    ]}]}
    before = orjson.dumps(req)
    ans = {"role": "assistant", "content": "ok ana@corp.io"}
    new_req, new_ans, _ = scrub_exchange(req, ans)
    parts = new_req["messages"][0]["content"]
    assert parts[0]["text"] == "mail <EMAIL_1>" and new_ans["content"] == "ok <EMAIL_1>"
    assert parts[1] == req["messages"][0]["content"][1]  # not text: left alone
    assert orjson.dumps(req) == before and ans["content"] == "ok ana@corp.io"


def test_request_and_response_bodies_share_placeholders() -> None:
    request = orjson.dumps({"messages": [{"role": "user", "content": "a@x.io then b@x.io"}]})
    response = orjson.dumps({"choices": [{"message": {"content": "wrote b@x.io"}}]})
    (req, resp), counts = scrub_texts([request.decode(), response.decode()])
    assert "a@x.io then b@x.io" not in req
    assert orjson.loads(resp)["choices"][0]["message"]["content"] == "wrote <EMAIL_2>"
    assert counts["email"] == 3


def test_nothing_found_returns_the_text_itself() -> None:
    text = "The quarterly report shows revenue grew 12% to 4.5 million by 10:30."
    out, counts = scrub_text(text)
    assert out is text and not counts
