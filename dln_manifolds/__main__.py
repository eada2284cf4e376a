"""``python -m dln_manifolds``: the same as the ``dln-manifolds`` command."""

import sys

from .cli import main

sys.exit(main())
