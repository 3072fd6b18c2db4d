"""``python -m fomm_model`` is the ``fomm`` command."""

import sys

from .cli import main

sys.exit(main())
