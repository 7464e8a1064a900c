"""Which partition a household lives on: the same rule Kafka's default partitioner applies.

Readings are batched per partition (many households in one message), tables use the producer's
partitioner on the household id, and both must agree: ``murmur2(household_id) % partitions``,
exactly what Java's and aiokafka's default partitioners compute for a key.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


class HouseholdPartitioner:
    """Caches the partition of each household id (murmur2 in pure Python costs microseconds)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._cache: dict[str, int] = {}

    def __call__(self, household_id: str) -> int:
        p = self._cache.get(household_id)
        if p is None:
            p = (murmur2(household_id.encode()) & 0x7FFFFFFF) % self.partitions
            if len(self._cache) < 1_000_000:
                self._cache[household_id] = p
        return p
