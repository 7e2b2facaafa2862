"""`python -m edgequant`: the same as the `edgequant` command."""

import sys

from edgequant.cli import console_main

if __name__ == "__main__":
    sys.exit(console_main())
