"""A one-shot that fails: the fault tests show its dependants blocked."""

import sys

print("fail_setup: cannot prepare", flush=True)
sys.exit(1)
