"""The `rerun` feeder: stored input payloads selected from the state DB."""
