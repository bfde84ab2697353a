"""``python -m annzoo.cli``: the ``annzoo`` command."""

import sys

from annzoo.cli import main

sys.exit(main())
