"""Report this node's hardware capacity, then again whenever it changes (demo service)."""

import os
import time


def capacity() -> str:
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpus = os.cpu_count() or 0
    st = os.statvfs("/")
    return f"cpus={cpus} memory={mem_kib // 1024}MiB rootfs={st.f_blocks * st.f_frsize >> 20}MiB"


last = ""
while True:
    now = capacity()
    if now != last:
        print(f"hwreport: {now}", flush=True)
        last = now
    time.sleep(5)
