"""Exits with an error at once: the fault tests' crashing service."""

import sys

print("crash: giving up", flush=True)
sys.exit(3)
