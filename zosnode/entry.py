"""What `zosnode ARGS` runs and the error policy every command shares (stdlib only): a node's
`node run` and FUSE mount child are dispatched by name, so it never imports `zosnode.cli`."""

import gc
import importlib
import sys
import traceback
from collections.abc import Callable, Sequence

from zosnode.errors import UsageError

CHILD_COMMAND = "_mount-child"  # the agent's FUSE mount child: not a command for people
NODE_RUN = ["node", "run"]

EXIT_INTERNAL, EXIT_USER = 1, 2


def guarded(command: Callable[[], int], debug: bool) -> int:
    """A `UsageError` is the user's (one line, exit 2); else ours (exit 1; traceback: --debug)."""
    collector_on()
    try:
        return int(command() or 0)
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        print(f"zosnode: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("zosnode: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc()
        else:
            print(f"zosnode: internal error: {type(exc).__name__}: {_one_line(str(exc))}"
                  " (run with --debug for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def collector_on() -> None:
    """The artifact's __main__ imports the command without the cyclic collector: what the start
    made is then frozen, so no later pass walks it (nor touches its pages after a fork)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no detail)"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == [CHILD_COMMAND]:  # by name: a process loads one of them (test_boundaries)
        child = importlib.import_module("zosnode.mount.child")
        collector_on()
        return int(child.main(args[1:]))
    if args[:2] == NODE_RUN:
        node = importlib.import_module("zosnode.agent.main")
        return guarded(lambda: int(node.main(args[2:])), debug=False)
    return int(importlib.import_module("zosnode.cli").main(args))
