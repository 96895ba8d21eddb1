"""`python -m hemovision_devstack up|down` (console script hemovision-devstack; also `hemovision up|down`)."""

import sys

from hemovision_devstack.cli import main

sys.exit(main())
