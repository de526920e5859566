"""``python -m pipelines.cli``: the same as the ``uebench`` command."""

import sys

from pipelines.cli import main

sys.exit(main())
