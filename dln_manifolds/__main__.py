"""``python -m dln_manifolds``: the same as the ``dln-manifolds`` command."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the imports run
    print("dln-manifolds: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
