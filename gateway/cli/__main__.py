"""`python -m gateway.cli …`: the same command as `slimgate …`."""

import sys

from gateway.cli import main

sys.exit(main())
