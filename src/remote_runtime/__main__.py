"""``python -m remote_runtime`` is the ``remote-runtime`` command."""

import sys

from .cli import main

sys.exit(main())
