"""Feeding: the feeder plugin contract, the runner that sends what feeders yield, pacing,
the registry, schedules and push delivery."""
