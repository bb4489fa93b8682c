import sys

from starmamut.cli import main

sys.exit(main())
