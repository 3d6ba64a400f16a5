"""``python -m instrument.cli``: the same as the ``instrument`` console script."""

import sys

from instrument.cli.app import main

sys.exit(main())
