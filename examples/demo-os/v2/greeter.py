"""A long-running service whose message changes between releases (demo)."""

import time

MESSAGE = "hello from release two, upgraded in place"

n = 0
while True:
    print(f"greeter: {MESSAGE} (tick {n})", flush=True)
    n += 1
    time.sleep(10)
