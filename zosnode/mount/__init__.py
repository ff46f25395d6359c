"""The read-only FUSE mount of an flist (pyfuse3), with readahead and prefetch."""
