"""argparse with our error policy, for `node run` and the CLI: kept out of `zosnode.entry`
so that the FUSE mount child, which parses no options, does not import argparse."""

import argparse

from zosnode.errors import UserError


class CliParser(argparse.ArgumentParser):
    """A mistake is one line on stderr, exit 2 (`zosnode.entry.guarded`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.removeprefix("zosnode").strip()
        raise UserError(f"{where}: {message}" if where else message)
