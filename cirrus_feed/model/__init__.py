"""The domain model: payloads and their ids, states, envelopes, records, the bucket layout.
No IO; imported by every other layer."""
