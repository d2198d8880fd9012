"""`python -m fashionlab` = the `fashionlab` command."""

import sys

from fashionlab.cli import main

sys.exit(main())
