"""Drive Chromium inside a test's network namespace (where the lab hub lives).

    python3 tests/web/browse_in_ns.py download HUB FARM DIR   -> the ISO's path
    python3 tests/web/browse_in_ns.py fleet HUB FARM           -> the fleet row, as JSON

Run by `ip netns exec` from tests/web/test_farmer_flow_vm.py: chromedriver
and its WebDriver client must share the namespace's loopback. Prints one
JSON line; screenshots go to docs/screenshots/.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP))

from tests.lab.webdriver import SHOTS, chromium, downloaded  # noqa: E402


def download(hub: str, farm: str, out: Path) -> dict[str, object]:
    with chromium(out) as b:
        b.get(hub + "/")
        b.type(b.find("#farm"), farm)
        b.click(b.find("input[name=kind][value=iso]"))
        b.click(b.find("details summary"))
        b.type(b.find("#args"), "quiet")
        b.click(b.find("#preview"))
        line = b.text(b.wait_for("#cmdline"))
        b.click(b.find("#download"))
        iso = out / "zosnode.iso"
        deadline = time.monotonic() + 120
        while not downloaded(iso):
            if time.monotonic() > deadline:
                raise SystemExit(f"no download in {out}: {list(out.iterdir())}")
            time.sleep(0.2)
        return {"iso": str(iso), "cmdline": line}


def fleet(hub: str, farm: str, deadline_s: float) -> dict[str, object]:
    """Reload the fleet page filtered by `farm` until its node shows as ready."""
    with chromium() as b:
        deadline = time.monotonic() + deadline_s
        row: list[str] | None = None
        while True:
            b.get(f"{hub}/fleet?farm={farm}")
            rows = b.find_all("#nodes tbody tr")
            if rows:
                row = b.text(rows[0]).split()
                if "ready" in row:
                    b.screenshot(SHOTS / "fleet-after-boot.png")
                    return {"row": row, "ready": True}
            if time.monotonic() > deadline:
                return {"row": row, "ready": False}
            time.sleep(1)


def main() -> None:
    verb, hub, farm = sys.argv[1:4]
    if verb == "download":
        result = download(hub, farm, Path(sys.argv[4]))
    else:
        result = fleet(hub, farm, float(sys.argv[4]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
