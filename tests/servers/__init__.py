"""Real STAC API servers that tests start on a free local port (see `servers.pgstac`)."""
