"""Readiness probe: the service is ready when its runtime can read /proc (demo)."""

import os
import sys

sys.exit(0 if os.path.exists("/proc/self/status") else 1)
