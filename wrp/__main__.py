"""``python -m wrp …`` — the same command line as the ``wrp`` console script."""

import sys

from wrp.cli import main

if __name__ == "__main__":
    sys.exit(main())
