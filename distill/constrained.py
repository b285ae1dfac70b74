"""Constrained decoding for embedded students: llguidance matchers as a logits processor.

Each row of a batch gets a matcher for its request's grammar (`gateway.constrain`), or
none when the request allows any text. Before every step the processor feeds each matcher
the token its row just took and masks the row's logits to the tokens the grammar allows
next; stop tokens are allowed exactly where the answer may end. llguidance is what vLLM
uses for the same grammars, so both engines emit the same language.
"""

from __future__ import annotations

import logging
from typing import Any

from distill.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from gateway.constrain import answer_grammar

log = logging.getLogger("slimgate.constrained")
_CACHE_SIZE = 256  # compiled grammars kept per student: one per tool set and format


class Constrainer:
    """Builds matchers for one tokenizer (an LLTokenizer costs up to a second: made once)."""

    def __init__(self, tokenizer: Any, stop_ids: set[int]) -> None:
        import llguidance.hf

        self.stop_ids = sorted(stop_ids)
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, eos_token=self.stop_ids)
        ids = [tokenizer.convert_tokens_to_ids(t) for t in (TOOL_CALL_OPEN, TOOL_CALL_CLOSE)]
        # Added tokens are special to llguidance: the grammar must name them as tokens.
        self.tag_tokens = all(isinstance(i, int) and i != tokenizer.unk_token_id
                              and self.tokenizer.is_special_token(i) for i in ids)
        self._compiled: dict[str, str | None] = {}  # Lark text → checked grammar (or None)

    def grammar(self, request: dict[str, Any]) -> str | None:
        return answer_grammar(request, tag_tokens=self.tag_tokens)

    def _compile(self, grammar: str) -> str | None:
        from llguidance import LLMatcher

        if grammar not in self._compiled:
            if len(self._compiled) >= _CACHE_SIZE:
                self._compiled.pop(next(iter(self._compiled)))
            compiled = LLMatcher.grammar_from_lark(grammar)
            error = LLMatcher.validate_grammar(compiled, self.tokenizer)
            if error:
                log.warning("answer grammar rejected, row left unconstrained: %s", error[:300])
            self._compiled[grammar] = None if error else compiled
        return self._compiled[grammar]

    def matcher(self, request: dict[str, Any]) -> Any:
        """A fresh matcher for the request's grammar; None when any text is allowed."""
        from llguidance import LLMatcher

        grammar = self.grammar(request)
        compiled = self._compile(grammar) if grammar else None
        return LLMatcher(self.tokenizer, compiled, log_level=0) if compiled else None


class GrammarLogitsProcessor:
    """A transformers logits processor: row i is held to matchers[i] (None: unconstrained)."""

    def __init__(self, matchers: list[Any], vocab_size: int, prompt_width: int,
                 stop_ids: list[int]) -> None:
        import numpy as np

        self.matchers = matchers
        self.stop_ids = stop_ids
        self.width = prompt_width
        self.words = (vocab_size + 31) // 32
        self.bitmask = np.zeros((len(matchers), self.words), dtype=np.int32)
        self.steps = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np
        import torch
        from llguidance.numpy import fill_next_token_bitmask

        fresh = input_ids.shape[1] == self.width
        rows = []
        for row, m in enumerate(self.matchers):
            if m is None:
                continue
            if not fresh and not (m.is_stopped() or m.is_error()):
                m.consume_token(int(input_ids[row, -1]))
            if m.is_stopped() or m.is_error():
                # The grammar is complete (llguidance stops a matcher by itself once
                # nothing but the end can follow) or broken: only a stop token is left.
                # Rows that have ended are padded by transformers whatever we allow.
                self._only_stops(row)
            else:
                fill_next_token_bitmask(m, self.bitmask, row)
            rows.append(row)
        if rows:
            bits = np.unpackbits(self.bitmask[rows].view(np.uint8), axis=1, bitorder="little")
            allowed = torch.zeros((len(rows), scores.shape[1]), dtype=torch.bool)
            width = min(scores.shape[1], bits.shape[1])
            allowed[:, :width] = torch.from_numpy(bits[:, :width].astype(bool))
            index = torch.tensor(rows)
            scores[index] = scores[index].masked_fill(~allowed.to(scores.device), float("-inf"))
        self.steps += 1
        return scores

    def _only_stops(self, row: int) -> None:
        import numpy as np

        bits = np.zeros(self.words * 32, dtype=np.uint8)
        bits[[t for t in self.stop_ids if t < bits.size]] = 1
        self.bitmask[row] = np.packbits(bits, bitorder="little").view(np.int32)
