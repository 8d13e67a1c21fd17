import sys

from mlo_bench.suite.cli import main

sys.exit(main())
