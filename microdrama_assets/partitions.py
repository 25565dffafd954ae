"""Partitions: episodes are dynamic; shot-level assets are keyed by (episode, shot slot).

Dagster's MultiPartitionsDefinition is a cross product, so shot slots ("s01", "s02", ...) are shared by all
episodes: an episode with fewer shots than the largest episode leaves its extra cells unused. Shot assets
materialize nothing for a slot their episode does not have (the run succeeds with the step skipped), so a
backfill over every cell is harmless. Keys stay within [a-z0-9_-] (commas break UI backfills, dagster#32183).
"""

from dagster import DynamicPartitionsDefinition, MultiPartitionKey, MultiPartitionsDefinition

episode_partitions = DynamicPartitionsDefinition(name="episodes")
shot_slot_partitions = DynamicPartitionsDefinition(name="shot_slots")
shot_partitions = MultiPartitionsDefinition({"episode": episode_partitions, "shot": shot_slot_partitions})


def shot_partition_key(episode_id: str, shot_id: str) -> MultiPartitionKey:
    return MultiPartitionKey({"episode": episode_id, "shot": shot_id})
