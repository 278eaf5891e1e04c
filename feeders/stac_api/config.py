"""Settings of the ``stac-api`` feeder, validated by pydantic before the feeder is built."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

from cirrus_feed.errors import ConfigError, FeederError
from cirrus_feed.feeding.contract import FeederConfig
from cirrus_feed.support.clock import utc
from cirrus_feed.support.durations import LenientDuration
from feeders.stac_api.windows import isoformat, parse_instant


class StacApiConfigError(FeederError, ConfigError):
    """A stac-api setting cannot work (with this API); a config error raised by a feeder."""


class SearchSettings(BaseModel):
    """Item-search parameters passed to `pystac_client.Client.search` as they are."""

    model_config = ConfigDict(extra="forbid")

    collections: list[str] | None = None
    bbox: list[float] | None = None
    intersects: dict[str, Any] | None = None
    ids: list[str] | None = None
    query: dict[str, Any] | list[str] | None = None
    filter: dict[str, Any] | str | None = None
    filter_lang: str | None = None
    sortby: str | list[Any] | None = None

    @field_validator("collections", "ids", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class DatetimeRange(BaseModel):
    """``{start, end}`` (either open), or a STAC interval string ``a/b`` with ``..`` ends."""

    model_config = ConfigDict(extra="forbid")

    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def parse_interval(cls, text: str) -> dict[str, str | None]:
        parts = [None if p in ("", "..") else p for p in text.split("/")]
        if len(parts) == 1:  # a single instant: the one-microsecond window holding it
            instant = parse_instant(text)
            return {"start": text, "end": isoformat(instant + timedelta(microseconds=1))}
        if len(parts) != 2:
            raise ValueError(f"datetime {text!r} must be 'start/end'")
        return {"start": parts[0], "end": parts[1]}

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else utc(value)


class ItemMapping(BaseModel):
    """``full`` items, or ``stub`` items that keep only the named ``assets``."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["full", "stub"] = "full"
    assets: list[str] = []

    @field_validator("mode", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class StacApiConfig(FeederConfig):
    """Settings of a ``stac-api`` feeder."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: str
    search: SearchSettings = SearchSettings()
    datetime_range: DatetimeRange = Field(default_factory=DatetimeRange, alias="datetime")
    # No search is paged deeper than this (APIs cap result windows); windows aim at half.
    max_items_per_window: PositiveInt = 5000
    page_size: int = Field(250, ge=1, le=10_000)
    headers: dict[str, str] = Field(default_factory=dict)
    fields: list[str] | None = None
    item_mapping: ItemMapping = ItemMapping()
    items_per_payload: PositiveInt = 1
    watermark: Literal["datetime", "updated"] = "datetime"
    lookback: LenientDuration = timedelta(0)  # "2h"; also seconds or ISO 8601 (PT2H)
    max_retries: int = Field(5, ge=0)
    backoff: float = Field(0.5, ge=0)
    timeout: PositiveFloat = 30.0
    max_requests_per_second: PositiveFloat | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"url {value!r} must be http(s)")
        return value

    @field_validator("datetime_range", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> Any:
        return DatetimeRange.parse_interval(value) if isinstance(value, str) else value

    @field_validator("item_mapping", mode="before")
    @classmethod
    def _mapping_shorthand(cls, value: Any) -> Any:
        return {"mode": value} if isinstance(value, str) else value

    @field_validator("fields")
    @classmethod
    def _keeps_what_feeding_needs(cls, value: list[str] | None) -> list[str] | None:
        needed = ("-id", "-collection", "-properties", "-properties.datetime")
        for entry in value or []:
            if entry in needed:
                raise ValueError(f"fields must not exclude {entry[1:]!r}: feeding needs it")
        return value
