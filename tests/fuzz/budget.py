"""The standing fuzz suite's harness: targets, a time budget, regressions.

A fuzz *target* is a function `check(data: bytes) -> None` for one layer: it
feeds the bytes to the layer and returns when the layer accepts them (after
asserting whatever the layer promises for accepted input, e.g. that a decoder
re-encodes them byte for byte) or refuses them with its own typed error. Any
other exception escapes and fails the run. Each target has a name, which is
also its folder of regression inputs, `tests/fuzz/regressions/<name>/`.

A test module declares its target and gets two kinds of tests from it:

    FLIST = Target("flist", check_flist)
    test_flist_regressions = replay(FLIST)          # every file in the folder
    test_flist_raw = fuzz(FLIST, st.binary())       # hypothesis, for the budget
    test_flist_havoc = fuzz(FLIST, havoc(SEEDS))    # many inputs per example

The strategies in `tests.fuzz.mutate` make inputs from valid seeds; the
havoc ones yield tuples of inputs per hypothesis example, which is how the
cheap targets get past hypothesis's own cost of about a millisecond an
example on the build machine.

Time budget. Hypothesis bounds a run by example count, never by time, and
how many examples fit in a second differs by orders of magnitude between
targets (and between an idle machine and a loaded one). So `fuzz()` runs the
hypothesis test in *batches*: a small first batch measures the rate, each
following batch is sized to fill what is left of the budget, and the loop
stops once the budget is spent. Every batch is an ordinary, complete
hypothesis run (fresh random seed, normal shrinking), built with public API
only: `settings(..., max_examples=n)(given(strategy)(body))`. A run can
overshoot its budget by at most one batch's worth of a mis-estimated rate,
plus shrinking when it fails.

The budget is per fuzz test, in seconds, from the environment variable
`ZOSNODE_FUZZ_SECONDS` (default 1.5: with about 35 fuzz tests the whole
folder takes about a minute on the 2-core build machine). `make fuzz` sets 60.

Failures. When a batch fails, hypothesis shrinks the input and re-raises the
target's exception on the minimal one; the harness saves that input as
`regressions/<name>/crash-<sha256 prefix>` and notes the path on the
exception. Commit the file with the fix: `replay()` runs it on every `make
test` from then on. The hypothesis example database is off (`database=None`):
the regressions folder is the one durable record, reviewed like code.

A regressions folder must not be empty (its replay test fails): keep at least
one input there, a past crasher or an edge case worth replaying. A crasher
another area owns and has not fixed yet is listed in the target's `known`
map (file name -> reason) and replays as `xfail(strict=True)`, so the fix is
noticed the day it lands.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

SECONDS_ENV = "ZOSNODE_FUZZ_SECONDS"
DEFAULT_SECONDS = 1.5
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
_FIRST_BATCH = 20
_MAX_BATCH = 20_000

# What every batch shares. No deadline: the machine is shared and a slow
# example is not a bug here (hangs are bounded by the budget and by the
# layer's own caps). Health checks about slow or large generation would only
# flag the big seed inputs we mutate on purpose.
FUZZ_SETTINGS = settings(
    database=None,
    deadline=None,
    derandomize=False,
    report_multiple_bugs=False,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=(
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ),
)

_TARGETS: dict[str, Target] = {}


def budget_seconds() -> float:
    raw = os.environ.get(SECONDS_ENV, "")
    if not raw:
        return DEFAULT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{SECONDS_ENV}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise ValueError(f"{SECONDS_ENV} must be positive, not {raw!r}")
    return value


@dataclass(frozen=True)
class Target:
    """One layer's property over arbitrary bytes, and its regression inputs."""

    name: str
    check: Callable[[bytes], None]
    # Regression file name -> why it is still expected to fail (owner, issue).
    known: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    root: Path = REGRESSIONS
    register: bool = True

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"bad target name {self.name!r}")
        if self.register:
            if self.name in _TARGETS:
                raise ValueError(f"fuzz target {self.name!r} is declared twice")
            _TARGETS[self.name] = self

    @property
    def folder(self) -> Path:
        return self.root / self.name

    def regressions(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    def save(self, data: bytes) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"crash-{hashlib.sha256(data).hexdigest()[:16]}"
        path.write_bytes(data)
        return path


def targets() -> Mapping[str, Target]:
    """Every target declared by the modules imported so far."""
    return MappingProxyType(_TARGETS)


@dataclass(frozen=True)
class Stats:
    target: str
    examples: int
    seconds: float
    batches: int

    @property
    def per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else 0.0


Inputs = st.SearchStrategy[bytes] | st.SearchStrategy[tuple[bytes, ...]]


def run_budgeted(target: Target, strategy: Inputs, seconds: float | None = None) -> Stats:
    """Run hypothesis over `strategy` in batches until `seconds` are spent.

    An example is one input, or a tuple of inputs (see `mutate.havoc`), each
    checked in turn; `Stats.examples` counts inputs.
    """
    budget = budget_seconds() if seconds is None else seconds
    failing: list[bytes] = []
    inputs = [0]
    examples = [0]

    def body(data: bytes | tuple[bytes, ...]) -> None:
        examples[0] += 1
        for item in (data,) if isinstance(data, bytes) else data:
            inputs[0] += 1
            try:
                target.check(item)
            except BaseException:
                failing.append(item)  # the last one is from the shrunk example
                raise

    start = time.monotonic()
    deadline = start + budget
    batch, batches = _FIRST_BATCH, 0
    while True:
        t0 = time.monotonic()
        before = examples[0]
        runner = settings(FUZZ_SETTINGS, max_examples=batch)(given(strategy)(body))
        try:
            runner()
        except BaseException as exc:
            if failing:
                path = target.save(failing[-1])
                exc.add_note(f"fuzz target {target.name!r}: input saved as {path}")
            raise
        batches += 1
        now = time.monotonic()
        left = deadline - now
        if left <= 0:
            break
        rate = max(examples[0] - before, 1) / max(now - t0, 1e-6)
        batch = int(min(max(rate * left, 1), _MAX_BATCH))
    return Stats(target.name, inputs[0], time.monotonic() - start, batches)


def fuzz(target: Target, strategy: Inputs) -> Callable[[], None]:
    """A pytest test that fuzzes `target` with `strategy` for the budget."""

    def test() -> None:
        stats = run_budgeted(target, strategy)
        print(f"fuzz {target.name}: {stats.examples} inputs in {stats.seconds:.1f} s "
              f"({stats.per_second:.0f}/s)")

    test.fuzz = (target, strategy)  # type: ignore[attr-defined]  # found by bench/fuzz.py
    return test


def replay(target: Target) -> Any:
    """A pytest test replaying every file of the target's regressions folder."""
    files = target.regressions()
    if not files:
        def test_empty() -> None:
            pytest.fail(f"{target.folder} holds no input: keep at least one (a past "
                        "crasher or an edge case) so the replay test has something to run")

        return test_empty
    unknown = set(target.known) - {p.name for p in files}
    if unknown:
        raise RuntimeError(f"{target.name}: known failures without a file: {sorted(unknown)}")
    params = [
        pytest.param(
            p, id=p.name,
            marks=[pytest.mark.xfail(strict=True, reason=target.known[p.name])]
            if p.name in target.known else [],
        )
        for p in files
    ]

    @pytest.mark.parametrize("path", params)
    def test(path: Path) -> None:
        target.check(path.read_bytes())

    return test
