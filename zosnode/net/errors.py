"""Errors of the network layer: ours versus the peer's."""

from zosnode.errors import UsageError, ZosError


class NetError(ZosError):
    """Base of every network bring-up error."""


class NetUsageError(NetError, UsageError):
    """We asked for something impossible (bad argument, missing interface)."""


class PacketError(NetError):
    """A peer sent a packet we refuse (truncated, malformed, hostile)."""


class NetSystemError(NetError):
    """The kernel refused a netlink or nftables request."""
