"""cirrus-feed: feeders and an event bridge for Cirrus STAC pipelines."""

from cirrus_feed.errors import CirrusFeedError, PayloadValidationError
from cirrus_feed.model.payload import ProcessPayload
from cirrus_feed.model.states import State

__all__ = ["CirrusFeedError", "PayloadValidationError", "ProcessPayload", "State"]
__version__ = "0.1.0"
