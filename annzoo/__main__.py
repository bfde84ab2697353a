"""``python -m annzoo``: the ``annzoo`` command (`annzoo.cli.main`), for an
environment whose scripts folder is not on ``PATH``."""

import sys

from annzoo.cli import main

if __name__ == "__main__":
    sys.exit(main())
