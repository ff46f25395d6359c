"""Least-recently-used accounting by bytes: pure bookkeeping, no files."""

from collections import OrderedDict

from zosnode.cache.errors import CacheUsageError


class LruIndex:
    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise CacheUsageError("the cache needs a positive size")
        self.max_bytes = max_bytes
        self.used = 0
        self._sizes: OrderedDict[str, int] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._sizes

    def touch(self, key: str) -> None:
        if key in self._sizes:
            self._sizes.move_to_end(key)

    def add(self, key: str, size: int) -> list[str]:
        """Record `key` as newest; return the keys to evict to stay in bounds."""
        self.remove(key)
        self._sizes[key] = size
        self.used += size
        evicted = []
        while self.used > self.max_bytes and len(self._sizes) > 1:
            old, old_size = self._sizes.popitem(last=False)
            self.used -= old_size
            evicted.append(old)
        return evicted

    def remove(self, key: str) -> None:
        self.used -= self._sizes.pop(key, 0)
