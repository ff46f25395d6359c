"""Trust: keys, signed roots and release manifests, and the one verifier.

Everything here except `keyfile`, `atomicfile` and `anchor.load_*` is pure
code: bytes and integers in, frozen dataclasses or typed errors out. Time is
always an argument (`now`, unix seconds), never read from a clock.
"""
