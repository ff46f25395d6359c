"""One-shot preparation the other services wait for (demo)."""

import os

print(f"setup: node prepared (kernel {os.uname().release})", flush=True)
