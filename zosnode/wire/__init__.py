"""Wire formats shared by the node, the hub and the publishing tools.

Pure code: bytes and integers in, frozen dataclasses or typed errors out.
Time is always an argument.
"""
