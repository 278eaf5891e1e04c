"""``cirrus-feed demo``: sample payloads and a generated STAC catalog on the embedded default."""
