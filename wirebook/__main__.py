"""`python -m wirebook` is the `wirebook` command."""

import sys

from .cli import main

sys.exit(main())
