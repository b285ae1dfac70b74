"""litellm, imported once and set up for a gateway: no telemetry, no network at import.

Used by the litellm upstream backend and by cost estimates; neither reaches into the other.
"""

from __future__ import annotations

import os
from types import ModuleType


def import_litellm() -> ModuleType:
    # Without this litellm fetches its cost map from the internet at import time.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    return litellm
