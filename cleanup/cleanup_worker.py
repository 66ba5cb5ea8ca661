#!/usr/bin/env python3
"""RugbyCodex cleanup worker: `python3 cleanup_worker.py [--once] [--dry-run]`.

Runs from the project root or from inside `cleanup/`; everything else lives in
the modules beside it and in `utils/`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cleanup.worker import main  # noqa: E402 - needs the path above

if __name__ == "__main__":
    sys.exit(main())
