"""Opaque keyset cursors.

A cursor is URL-safe base64 of a small JSON array: the list it belongs to, then the sort key
of the last row returned. It only moves a position inside lists that are already filtered by
user, so a forged cursor can skip rows but never reveal another user's.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from store.errors import InvalidCursor

_MAX_CURSOR_LENGTH = 200


def encode_cursor(kind: str, *key: int | datetime) -> str:
    values: list[object] = [kind]
    for part in key:
        values.append(part.astimezone(UTC).isoformat() if isinstance(part, datetime) else part)
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_id_cursor(kind: str, cursor: str, field: str = "cursor") -> int:
    """Decode a cursor whose key is a row id."""
    values = _decode(kind, cursor, field, 1)
    return _as_id(values[0], field)


def decode_time_id_cursor(kind: str, cursor: str, field: str = "cursor") -> tuple[datetime, int]:
    """Decode a cursor whose key is (timestamp, row id)."""
    values = _decode(kind, cursor, field, 2)
    if not isinstance(values[0], str):
        raise InvalidCursor(field)
    try:
        moment = datetime.fromisoformat(values[0])
    except ValueError:
        raise InvalidCursor(field) from None
    if moment.tzinfo is None:
        raise InvalidCursor(field)
    try:
        # An offset can move a date at the edge of the calendar (year 1 or 9999) out of range.
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise InvalidCursor(field) from None
    return moment, _as_id(values[1], field)


def _decode(kind: str, cursor: str, field: str, key_length: int) -> list[object]:
    if not isinstance(cursor, str) or not cursor or len(cursor) > _MAX_CURSOR_LENGTH:
        raise InvalidCursor(field)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor(field) from None
    if not isinstance(values, list) or len(values) != key_length + 1 or values[0] != kind:
        raise InvalidCursor(field)
    return values[1:]


def _as_id(value: object, field: str) -> int:
    # bool is an int subclass in Python, and a cursor never contains one.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
        raise InvalidCursor(field)
    return value
