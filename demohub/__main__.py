"""`python -m demohub new NAME --kind image|text` (demohub/scaffold.py)."""

import sys

from demohub.scaffold import main

sys.exit(main())
