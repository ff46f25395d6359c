"""The single-file artifact: its build record and its native-code unpacker (stdlib only:
`unpack` runs before any third-party module can be imported)."""
