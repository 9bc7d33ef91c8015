"""Dynamic partitions: one per batch of newly arriving dialogues (an inbox file)."""

from dagster import DynamicPartitionsDefinition

dialogue_batches = DynamicPartitionsDefinition(name="dialogue_batches")
