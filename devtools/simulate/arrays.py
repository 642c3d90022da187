"""Vectorised building blocks for the simulated tenant: ids, strings, IPs and event times.

Why a module of its own: the simulator must write a million mails a day in seconds, so no
per-row Python is allowed on the mail path. Everything here turns numpy arrays into Arrow
arrays in bulk (fixed-width byte tricks for GUIDs and hex ids, Arrow compute kernels for
joins and look-ups), and every random draw goes through a caller-provided, seeded
``numpy.random.Generator`` so the output is a pure function of the seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

US = 1_000_000
"""Microseconds per second: every time in the simulator is an int64 count of µs since the epoch."""
MINUTE_US = 60 * US
HOUR_US = 3600 * US
DAY_US = 24 * HOUR_US

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
# Where the dashes of a canonical GUID go (8-4-4-4-12), as positions in the 36-char text.
_GUID_HEX_POS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])

StrLike = pa.Array | pa.ChunkedArray | str


def to_us(value: datetime) -> int:
    """A timezone-aware datetime as µs since the epoch."""
    if value.tzinfo is None:
        raise ValueError("expected a timezone-aware datetime (UTC)")
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


def from_us(value: int) -> datetime:
    """µs since the epoch as a UTC datetime."""
    return datetime.fromtimestamp(value // US, tz=UTC).replace(microsecond=int(value % US))


def iso(value: int) -> str:
    """µs since the epoch as ISO 8601 UTC with a ``Z`` (the form the labels file uses)."""
    return from_us(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fixed_width(data: np.ndarray) -> pa.StringArray:
    """An (n, w) uint8 array of ASCII as n strings of width w, without a Python loop."""
    n, width = data.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(np.ascontiguousarray(data).tobytes())
    )


def const_str(value: str, n: int) -> pa.StringArray:
    """*n* copies of *value* as a string array (one buffer copy, no per-row work)."""
    raw = value.encode("utf-8")
    offsets = (np.arange(n + 1, dtype=np.int64) * len(raw)).astype(np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(raw * n))


def hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> pa.StringArray:
    """*n* random lowercase hex strings of 2 * *nbytes* characters."""
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    out = np.empty((n, 2 * nbytes), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    return _fixed_width(out)


def guids(rng: np.random.Generator, n: int) -> pa.StringArray:
    """*n* random version-4 GUIDs in canonical lowercase form."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 15]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, _GUID_HEX_POS] = digits
    return _fixed_width(out)


def guid_list(rng: np.random.Generator, n: int) -> list[str]:
    """A few GUIDs as Python strings (for tenant set-up, not the mail path)."""
    return guids(rng, n).to_pylist()


def random_words(rng: np.random.Generator, n: int, min_len: int, max_len: int) -> pa.StringArray:
    """*n* random lowercase words of *min_len*..*max_len* letters (random domain labels)."""
    lengths = rng.integers(min_len, max_len + 1, size=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    letters = _LETTERS[rng.integers(0, 26, size=int(offsets[-1]))]
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(letters.tobytes()))


def take(vocab: Sequence[str] | pa.Array, idx: np.ndarray) -> pa.Array:
    """``vocab[idx]`` as an Arrow string array."""
    arr = vocab if isinstance(vocab, pa.Array) else pa.array(list(vocab), pa.string())
    return pc.take(arr, pa.array(np.asarray(idx, dtype=np.int64)))


def choose(
    rng: np.random.Generator,
    vocab: Sequence[str] | pa.Array,
    n: int,
    p: Sequence[float] | np.ndarray | None = None,
) -> pa.Array:
    """*n* draws from *vocab* (with optional weights)."""
    return take(vocab, rng.choice(len(vocab), size=n, p=None if p is None else _norm(p)))


def _norm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(p, dtype=float)
    return arr / arr.sum()


def join(*parts: StrLike, sep: str = "") -> pa.Array:
    """Element-wise concatenation of arrays and scalars with *sep* between parts."""
    if not any(isinstance(p, (pa.Array, pa.ChunkedArray)) for p in parts):
        raise ValueError("join needs at least one array")
    return pc.binary_join_element_wise(*parts, sep)


def ints_to_str(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())


def ipv4(prefix: tuple[int, int, int], hosts: np.ndarray) -> pa.Array:
    """Addresses ``a.b.c.<host>`` in one /24 for each host number."""
    return join(".".join(str(o) for o in prefix), ints_to_str(hosts), sep=".")


def ipv4_from_prefixes(prefixes: np.ndarray, hosts: np.ndarray) -> pa.Array:
    """Addresses from an (n, 3) array of /24 prefixes and n host numbers."""
    cols = [ints_to_str(prefixes[:, i]) for i in range(3)]
    return join(*cols, ints_to_str(hosts), sep=".")


def domain_of(addresses: pa.Array) -> pa.Array:
    """The part after the last ``@`` of each address, lowercased."""
    return pc.utf8_lower(pc.replace_substring_regex(addresses, pattern=r"^.*@", replacement=""))


# ---------------------------------------------------------------------------------------------
# Event times


RateFn = Callable[[np.ndarray], np.ndarray]
"""Expected events per hour for each hour start (µs): the shape of a traffic stream."""


def poisson_times(
    rng: np.random.Generator,
    start_us: int,
    end_us: int,
    rate: RateFn,
    *,
    per_hour: tuple[int, int] | None = None,
) -> np.ndarray:
    """Sorted event times in ``[start_us, end_us)``: Poisson counts per clock hour, uniform within.

    *per_hour* clips each full clock hour's count to ``[low, high]`` (a part hour to its share
    of it, rounded up), so a stream that must stay under a threshold always does.
    """
    if end_us <= start_us:
        return np.empty(0, dtype=np.int64)
    first = start_us - start_us % HOUR_US
    hour_starts = np.arange(first, end_us, HOUR_US, dtype=np.int64)
    seg_start = np.maximum(hour_starts, start_us)
    seg_end = np.minimum(hour_starts + HOUR_US, end_us)
    frac = (seg_end - seg_start) / HOUR_US
    lam = np.maximum(rate(hour_starts), 0.0) * frac
    counts = rng.poisson(lam)
    if per_hour is not None:
        low, high = per_hour
        full = frac >= 1.0
        counts = np.where(full, np.clip(counts, low, high), np.minimum(counts, np.ceil(high * frac)))
        counts = counts.astype(np.int64)
    total = int(counts.sum())
    offsets = (rng.random(total) * np.repeat(seg_end - seg_start, counts)).astype(np.int64)
    times = np.repeat(seg_start, counts) + offsets
    times.sort()
    return times


def local_hour(hour_starts: np.ndarray, tz_offset_hours: int) -> np.ndarray:
    return ((hour_starts // HOUR_US) + tz_offset_hours) % 24


def is_weekend(hour_starts: np.ndarray, tz_offset_hours: int) -> np.ndarray:
    """Saturday or Sunday in the tenant's local time (1970-01-01 was a Thursday)."""
    local_days = (hour_starts // HOUR_US + tz_offset_hours) // 24
    return ((local_days + 3) % 7) >= 5


def office_shape(hour_starts: np.ndarray, tz_offset_hours: int) -> np.ndarray:
    """0..1: how busy an office-hours mail flow is at each local hour (peak early afternoon)."""
    h = local_hour(hour_starts, tz_offset_hours).astype(float)
    return np.exp(-(((h - 12.5) / 3.6) ** 2))
