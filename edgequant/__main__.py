import sys

from edgequant.cli import console_main

sys.exit(console_main())
