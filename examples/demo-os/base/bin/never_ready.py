"""A readiness probe that always fails: release 3 uses it to show a rollback."""

import sys

sys.exit(1)
