"""`zosnode.cred` beside a signed kernel image (docs/boot-trust.md): command-line words, parsed
alike (trust keys refused); unsigned, so per-farm keys only, and the command line wins a tie."""

from pathlib import Path

from zosnode.agent import cmdline

SETTINGS_FILES = (Path("/.extra/credentials/zosnode.cred"),  # the first that exists is read
                  Path("/.extra/global_credentials/zosnode.cred"))
# What differs per farm and so may come unsigned (zos.cache.format, say, may not).
PER_FARM = ("zos.farm", "zos.channel", "zos.hub", "zos.net", "zos.debug")
NONE = cmdline.Parsed(cmdline.DEFAULTS, ())


def parse(text: str, defaults: cmdline.Config = cmdline.DEFAULTS) -> cmdline.Parsed:
    """The settings file's words; notes say `settings: ...`. Pure."""
    notes: list[str] = []
    if len(text) > cmdline.MAX_CMDLINE:
        notes.append(f"longer than {cmdline.MAX_CMDLINE} bytes: the rest is ignored")
        text = text[:cmdline.MAX_CMDLINE]
    kept: list[str] = []
    for token in cmdline.tokens(text):
        key = token.partition("=")[0]
        if key in PER_FARM:
            kept.append(f'"{token}"')
        elif key.startswith("zos."):
            # A trust key is refused with the command line's own words.
            refused = [n for n in cmdline.parse(f'"{token}"').notes if n.startswith("refused")]
            notes += refused or [f"ignored {key[:40]!r}: not a per-farm setting "
                                 "(command line only)"]
        else:
            notes.append(f"ignored {key[:40]!r}: the settings carry zos.* keys only")
    parsed = cmdline.parse(" ".join(kept), defaults)
    return cmdline.Parsed(parsed.config, tuple(f"settings: {n}" for n in (*notes, *parsed.notes)))


def load(paths: tuple[Path, ...] = SETTINGS_FILES) -> cmdline.Parsed:
    for path in paths:
        try:
            with open(path, "rb") as f:
                raw = f.read(cmdline.MAX_CMDLINE + 1)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return cmdline.Parsed(cmdline.DEFAULTS,
                                  (f"settings: {path} unreadable: {exc.strerror}",))
        return parse(raw.decode("utf-8", "replace"))
    return NONE
