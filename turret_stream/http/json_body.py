"""JSON request bodies the pipeline can carry, or a clear 400.

Everything accepted here travels to Kafka, the tokenizer and the vector store, so a body is
refused at the door when any of them would choke on it later (one poisoned event used to
crash an agent and lose the batch in hand):

- the bytes are UTF-8, strictly: no byte-order mark, no encoded surrogates (CESU-8, WTF-8);
- the JSON is standard: no ``NaN``/``Infinity``, and no number that only parses as one
  (``1e309`` would become infinity);
- integers fit in 64 bits (the store keeps signed 64-bit integers);
- no string or object key holds a lone surrogate (``"\\ud800"`` is legal JSON but not
  Unicode: the tokenizer and the store cannot encode it);
- nesting is at most ``MAX_DEPTH`` deep (a 1,000-deep body used to be a RecursionError).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from turret_stream.errors import ApiError, ErrorCode

# Bodies turret-stream reads are flat (an event: 2 levels); 32 leaves room and refuses
# anything built to exhaust the parser's stack.
MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def bad_body(problem: str) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_REQUEST, f"Invalid JSON body: {problem}")


def has_surrogate(text: str) -> bool:
    """True when ``text`` holds a lone surrogate code point (not encodable as UTF-8)."""
    return _SURROGATE.search(text) is not None


def _finite_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"number {raw[:40]} is out of range (not a finite 64-bit float)")
    return value


def _int64(raw: str) -> int:
    value = int(raw)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"integer {raw[:40]}... does not fit in 64 bits")
    return value


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; accepting them would poison every consumer downstream.
    raise ValueError(f"{name} is not valid JSON")


def _field(path: list[str]) -> str:
    return ".".join(path) or "body"


def check_unicode(value: Any) -> None:
    """Refuse a lone surrogate in any string or key of a parsed body, and nesting deeper
    than ``MAX_DEPTH``. Iterative, so the check itself cannot overflow the stack."""
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise bad_body(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, str):
            if has_surrogate(node):
                raise ApiError(
                    400,
                    ErrorCode.INVALID_REQUEST,
                    f"Invalid field '{_field(path)}': contains a lone surrogate "
                    "(an escape like \\ud800 that is not half of a pair); text must be "
                    "valid Unicode",
                    field=_field(path),
                )
        elif isinstance(node, dict):
            for key, item in node.items():
                if has_surrogate(key):
                    # The key itself cannot be echoed back: name its parent.
                    raise ApiError(
                        400,
                        ErrorCode.INVALID_REQUEST,
                        f"Invalid field '{_field(path)}': a key contains a lone surrogate; "
                        "keys must be valid Unicode",
                        field=_field(path),
                    )
                stack.append((item, [*path, key]))
        elif isinstance(node, list):
            stack.extend((item, [*path, str(i)]) for i, item in enumerate(node))


def parse_json_body(raw: bytes) -> Any:
    """The parsed body, or 400 INVALID_REQUEST saying what is wrong with it."""
    if raw.startswith(_BOMS):
        raise bad_body("starts with a byte-order mark; send UTF-8 without one")
    try:
        text = raw.decode("utf-8")  # strict: encoded surrogates are refused here
    except UnicodeDecodeError as exc:
        raise bad_body(f"not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_int64,
        )
    except RecursionError:
        raise bad_body(f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        raise bad_body(str(exc)) from None
    check_unicode(value)
    return value
