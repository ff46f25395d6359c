"""argparse with our error policy, for `node run` and the CLI (the mount child needs none)."""

import argparse

from zosnode.errors import UserError


class CliParser(argparse.ArgumentParser):
    """A mistake is one line on stderr, exit 2 (`zosnode.entry.guarded`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.removeprefix("zosnode").strip()
        raise UserError(f"{where}: {message}" if where else message)
