"""Estimated cost of an exchange from litellm's bundled (offline) price map."""

from __future__ import annotations

from gateway.litellm_module import import_litellm


class CostTable:
    """Per-token prices looked up once per model; unknown models cost None, not 0."""

    def __init__(self) -> None:
        self._prices: dict[str, tuple[float, float] | None] = {}

    def prices(self, model: str) -> tuple[float, float] | None:
        if model not in self._prices:
            litellm = import_litellm()
            try:
                p, c = litellm.cost_per_token(model=model, prompt_tokens=1, completion_tokens=1)
                self._prices[model] = (float(p), float(c))
            except Exception:  # litellm raises a bare Exception for unmapped models
                self._prices[model] = None
        return self._prices[model]

    def estimate(
        self, model: str, prompt_tokens: int | None, completion_tokens: int | None
    ) -> float | None:
        price = self.prices(model)
        if price is None or (prompt_tokens is None and completion_tokens is None):
            return None
        return (prompt_tokens or 0) * price[0] + (completion_tokens or 0) * price[1]
