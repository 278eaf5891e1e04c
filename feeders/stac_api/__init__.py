"""The `stac-api` feeder: items of a STAC API search, window by window."""
