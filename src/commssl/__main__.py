"""``python -m commssl [HOST[:PORT]]``: the peer-chain inspector (see ``commssl.cli``).

Also the ``commssl`` console script (``commssl.__main__:main``).
"""

from __future__ import annotations

import sys

from commssl.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
