"""``python -m handgrad.reference.cli``: the ``handgrad`` command."""

import sys

from . import main

__all__: list[str] = []

sys.exit(main())
