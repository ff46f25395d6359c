"""flists: filesystem images as metadata, their bytes in content-addressed blocks.

Modules: `blocks` (block verification), `format` (the wire format),
`writer` (encoding both, for builders), `store` (the local block store),
`view` (the read core every front end shares), `tree`/`pack` and `source_*`
(builders), `extract` (sync readers), `browse` (paths as text, for the
command line), `diff` and `stats`.
"""
