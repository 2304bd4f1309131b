import sys

from runlake.cli import main

sys.exit(main())
