"""python -m bench.run"""

import sys

from bench.run.cli import main

sys.exit(main())
