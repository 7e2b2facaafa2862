import sys

from edgequant.cli import main

sys.exit(main())
