"""``python -m scmix``: the ``scmix`` command (``python -m scmix fit`` runs on the demo data)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
