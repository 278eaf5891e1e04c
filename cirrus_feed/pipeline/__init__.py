"""The pipeline stages: enqueue → process → (workflow) → update-state, and what they share."""
