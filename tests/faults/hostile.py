"""A seeded generator of hostile NDJSON input: bad records of every class the readers and
the payload rules must reject, mixed with good payloads.

Every record is one line (none blank, none indented), so a file of N lines holds N records,
each bad or good, and what became of every line can be accounted for. The bad records are
bad for every input path (``enqueue``, ``payload validate``, and ``feed --input`` through an
events feeder with the ``stac-item`` mapper, which splits payloads into one per feature):
they carry a single feature, so no rule depends on features travelling together.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WORKFLOW = "publish-only"
COLLECTION = "hostile"
RECORD_CAP = 8192  # the configured cap (inputs.max_record_bytes) the files are made for

Maker = Callable[[random.Random, int], bytes]


def payload(item_id: str, collection: str = COLLECTION, **extra: Any) -> dict[str, Any]:
    feature = {"type": "Feature", "id": item_id, "collection": collection, "properties": {}}
    return {
        "type": "FeatureCollection",
        "features": [feature],
        "process": [{"workflow": WORKFLOW}],
        **extra,
    }


def good_id(item_id: str, collection: str = COLLECTION) -> str:
    return f"{collection}/workflow-{WORKFLOW}/{item_id}"


def _line(value: Any) -> bytes:
    return json.dumps(value).encode()


def _segments(rng: random.Random, count: int) -> str:
    return "/".join(f"s{rng.randrange(10**6):06d}" + "x" * 190 for _ in range(count))


# -- the classes of bad records ---------------------------------------------------------------


def bad_utf8(rng: random.Random, n: int) -> bytes:
    junk = rng.choice([b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"])
    head, _, tail = _line(payload(f"utf8-{n}-MARK")).partition(b"MARK")
    return head + junk + tail


def syntax(rng: random.Random, n: int) -> bytes:
    whole = _line(payload(f"syntax-{n}"))
    return rng.choice(
        [
            whole[: rng.randrange(2, len(whole) - 1)],  # truncated: a partial write
            whole[:-1] + b",}",  # trailing comma
            whole.replace(b'"', b"'", 4),  # single quotes
            b"not json at all " + str(n).encode(),
            whole + b" " + whole,  # two values on a line
        ]
    )


def deep_nesting(rng: random.Random, n: int) -> bytes:
    depth = rng.randrange(65, 3000)
    return b'{"features": ' + b"[" * depth + b"]" * depth + b', "n": ' + str(n).encode() + b"}"


def huge_number(rng: random.Random, n: int) -> bytes:
    digits = rng.choice([4301, 5000, 200])
    number = rng.choice(["1" + "0" * (digits - 1), "1e999", "-1e400", "NaN", "Infinity"])
    head, _, tail = _line(payload(f"number-{n}", size="NUMBER")).partition(b'"NUMBER"')
    return head + number.encode() + tail


def oversize(rng: random.Random, n: int) -> bytes:
    return _line(payload(f"big-{n}", pad="x" * rng.randrange(RECORD_CAP, 2 * RECORD_CAP)))


def surrogate(rng: random.Random, n: int) -> bytes:
    escape = rng.choice([b"\\ud800", b"\\udfff", b"\\uDBFF", b"\\ude00x"])
    head, _, tail = _line(payload(f"surrogate-{n}-MARK")).partition(b"MARK")
    return head + escape + tail


def nul(rng: random.Random, n: int) -> bytes:
    head, _, tail = _line(payload(f"nul-{n}", note="MARK")).partition(b"MARK")
    return head + b"\\u0000" + tail


def control_in_id(rng: random.Random, n: int) -> bytes:
    character = rng.choice(["\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\u2028"])
    if rng.random() < 0.5:
        return _line(payload(f"ctl-{n}{character}forged"))
    return _line(payload(f"ctl-{n}", collection=f"c{character}1"))


def long_itemids(rng: random.Random, n: int) -> bytes:
    """Over the 1,024-byte DynamoDB range key, each segment a legal file name."""
    return _line(payload(f"r{n}/" + _segments(rng, 6)))


def long_collections(rng: random.Random, n: int) -> bytes:
    """Over the 2,048-byte DynamoDB hash key."""
    return _line(payload(f"h{n}", collection=_segments(rng, 11)))


def long_payload_id(rng: random.Random, n: int) -> bytes:
    """Both keys fit DynamoDB, the id does not fit the S3 keys of its executions."""
    return _line(payload(f"s{n}/" + _segments(rng, 3), collection=_segments(rng, 3)))


def long_segment(rng: random.Random, n: int) -> bytes:
    """One path segment over the 255-byte file name limit."""
    return _line(payload(f"seg-{n}-" + "y" * rng.randrange(250, 1000)))


def not_a_payload(rng: random.Random, n: int) -> bytes:
    return _line(
        rng.choice(
            [
                n,
                f"string {n}",
                None,
                True,
                {"foo": n},
                {"type": "FeatureCollection", "features": [{"type": "Feature", "id": n}]},
                {"detail-type": "Step Functions Execution Status Change", "source": "aws.states"},
                {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": f"k{n}"}}}]},
            ]
        )
    )


def stray_bracket(rng: random.Random, n: int) -> bytes:
    """A line holding only a bracket: it opens a document that the next line ends."""
    return rng.choice([b"{", b"["])


CLASSES: dict[str, Maker] = {
    "bad-utf8": bad_utf8,
    "syntax": syntax,
    "deep-nesting": deep_nesting,
    "huge-number": huge_number,
    "oversize": oversize,
    "surrogate": surrogate,
    "nul": nul,
    "control-in-id": control_in_id,
    "long-itemids": long_itemids,
    "long-collections": long_collections,
    "long-payload-id": long_payload_id,
    "long-segment": long_segment,
    "not-a-payload": not_a_payload,
    "stray-bracket": stray_bracket,
}
WEIGHTS = {"oversize": 0.25, "stray-bracket": 0.25}  # big lines, or few kinds: fewer of them


@dataclass
class HostileInput:
    lines: list[bytes]
    bad_lines: set[int] = field(default_factory=set)  # 1-based
    good_ids: set[str] = field(default_factory=set)
    classes: Counter[str] = field(default_factory=Counter)

    @property
    def data(self) -> bytes:
        return b"".join(line + b"\n" for line in self.lines)

    @property
    def as_array(self) -> bytes:
        """The same records as the elements of a pretty-printed array, one a line (line
        ``n + 1`` holds record ``n``)."""
        return b"[\n  " + b",\n  ".join(self.lines) + b"\n]\n"


def generate(seed: int, bad: int = 10_000, good: int = 500) -> HostileInput:
    """``bad`` bad records (every class, shuffled) and ``good`` good payloads, in a
    deterministic order for ``seed``. No bad line follows a stray bracket's line... except
    by design: the line after a bracket always starts at column 0, which ends it."""
    rng = random.Random(seed)
    names = list(CLASSES)
    weights = [WEIGHTS.get(name, 1.0) for name in names]
    kinds = [*names, *rng.choices(names, weights, k=bad - len(names)), *(["good"] * good)]
    rng.shuffle(kinds)
    result = HostileInput(lines=[])
    for number, kind in enumerate(kinds, start=1):
        if kind == "good":
            item_id = f"good-{number:05d}"
            result.lines.append(_line(payload(item_id)))
            result.good_ids.add(good_id(item_id))
        else:
            result.lines.append(CLASSES[kind](rng, number))
            result.bad_lines.add(number)
        result.classes[kind] += 1
    return result
