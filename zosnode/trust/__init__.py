"""Keys, signed roots and manifests, the one verifier: pure code (all but `keyfile`,
`atomicfile`, `anchor.load_embedded`), time always an argument, never read from a clock."""
