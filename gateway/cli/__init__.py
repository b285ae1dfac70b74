"""The `slimgate` command: one parser (`parser.py`), one dispatch (`main`), one function per verb.

The CLI is the composition root: it is the only part of `gateway` that may import `distill`,
and only inside the verbs that learn (`worker`, `distill`), load a student model (`serve`
hands the gateway a student loader) or write one out (`students export`). It is also the
only code that reads argv.
"""

from __future__ import annotations

import os
import sys

from gateway.cli.parser import build_parser
from gateway.config import ConfigError
from gateway.store.db import StoreError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Idle OpenMP threads sleep instead of spinning: the gateway's students and the worker's
    # training share few cores, and two spinning pools slow each other ~20x (measured).
    # Set before torch is imported; inherited by the worker subprocess.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        code: int = args.func(args)
    except SystemExit as e:  # a config error, already explained on stderr
        return int(e.code or 0)
    except (StoreError, ConfigError) as e:  # unreachable database, a newer store, unset env
        print(f"slimgate: {e}", file=sys.stderr)
        return 2
    return code


__all__ = ["build_parser", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
