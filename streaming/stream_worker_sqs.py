#!/usr/bin/env python3
"""RugbyCodex transcoding worker: `python3 stream_worker_sqs.py [--once]`.

Runs from the project root or from inside `streaming/` (as systemd and the
seed's docs do); everything else lives in the modules beside it.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streaming.worker import main  # noqa: E402 - needs the path above

if __name__ == "__main__":
    sys.exit(main())
