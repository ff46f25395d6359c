"""The single-file artifact: its build record and its native-code unpacker.

Everything in this package is standard library only: `unpack` runs before
any third-party module can be imported.
"""
