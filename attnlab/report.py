"""`python -m attnlab.report <sweep dir>`: rebuild a sweep's report from its dir at any time
(the command's name since attnlab 0.1; the code is attnlab.runs.report)."""

from __future__ import annotations

import sys

from attnlab.console import make_console_safe
from attnlab.runs.report import main

if __name__ == "__main__":
    make_console_safe()
    sys.exit(main())
