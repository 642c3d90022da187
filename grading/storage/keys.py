"""Table Storage keys that hold any connector name safely.

Why: PartitionKey and RowKey forbid ``/ \\ # ?`` and control characters (U+0000-U+001F,
U+007F-U+009F) and are limited to 1 KiB, while connector names come from attackers and may
contain anything. :func:`encode_key` percent-encodes exactly those characters (and ``%``
itself), so the key stays readable for ordinary names and reversible for all of them; a name too
long for a key is cut and suffixed with a hash of the whole name (the entity then keeps the name
in a property, since such a key cannot be decoded).
"""

from __future__ import annotations

import hashlib

MAX_KEY_CHARS = 512
_FORBIDDEN = set("/\\#?%")


def _needs_escape(ch: str) -> bool:
    code = ord(ch)
    return ch in _FORBIDDEN or code < 0x20 or 0x7F <= code <= 0x9F


def encode_key(name: str) -> str:
    """A valid PartitionKey/RowKey for *name* (which may be empty or hold any character)."""
    out = "".join(f"%{ord(ch):02X}" if _needs_escape(ch) else ch for ch in name)
    if not out:
        return "%00empty"
    if len(out) > MAX_KEY_CHARS:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        out = out[: MAX_KEY_CHARS - 40] + "~" + digest
    return out


def decode_key(key: str) -> str:
    """The name behind a key made by :func:`encode_key` (not for cut, hashed keys)."""
    if key == "%00empty":
        return ""
    out, i = [], 0
    while i < len(key):
        if key[i] == "%":
            out.append(chr(int(key[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(key[i])
            i += 1
    return "".join(out)
