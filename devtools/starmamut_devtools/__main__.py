import sys

from starmamut_devtools.cli import main

sys.exit(main())
