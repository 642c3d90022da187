"""A tiny HTML builder where text is escaped unless this module built it.

Why a builder rather than a template with ``{}`` holes: a report is full of attacker-written
strings (connector names, UPNs, domains, URLs, connector parameters), and one forgotten escape
in a template is a stored XSS in the analyst's browser. Here the only way to emit raw HTML is
:class:`Markup`, which only :func:`el` and :func:`json_block` produce; every other value is text,
shown with control and format characters made visible (so a right-to-left override cannot
disguise a name) and HTML-escaped for element text, attributes and
SVG text alike (inline SVG is parsed by the HTML parser, so the same escaping holds there).
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

_TAG = re.compile(r"[a-z][a-zA-Z0-9]*\Z")
_ATTR = re.compile(r"[a-zA-Z][a-zA-Z0-9:-]*\Z")
VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "wbr"})
PLAIN_TEXT = frozenset({"title", "text", "tspan", "desc", "textarea", "option"})
"""Elements whose text is shown without markup: ``<title>`` is RCDATA, and in SVG text an HTML
``<span>`` would break out of the SVG element, so their strings are escaped by :func:`plain`."""


class Markup(str):
    """HTML built by this module. Any other ``str`` given to :func:`el` is escaped as text."""

    __slots__ = ()


_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_code(ch: str) -> str:
    code = ord(ch)
    return _NAMED.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def _runs(value: object) -> Iterable[tuple[bool, str]]:
    """(hidden, chunk) runs of ``str(value)``: hidden chunks are one control/format character."""
    run: list[str] = []
    for ch in str(value):
        if unicodedata.category(ch) in _HIDDEN:
            if run:
                yield False, "".join(run)
                run = []
            yield True, ch
        else:
            run.append(ch)
    if run:
        yield False, "".join(run)


def text(value: object) -> Markup:
    """*value* as HTML-escaped element text. A control or format character (newline, NUL, a
    right-to-left override, a lone surrogate) is shown as a highlighted escape such as ``\\n``, so
    it can neither disguise a name nor be mistaken for the same characters typed literally."""
    out = []
    for hidden, chunk in _runs(value):
        if hidden:
            out.append(f'<span class="ctl" title="U+{ord(chunk):04X}">{_escape_code(chunk)}</span>')
        else:
            out.append(html.escape(chunk, quote=True))
    return Markup("".join(out))


def visible(value: object) -> str:
    """``str(value)`` with control and format characters as escapes (``\\n``, ``\\u202e``); no
    other change (a backslash stays one backslash, so names read as they are spelt)."""
    return "".join(_escape_code(c) if hidden else c for hidden, c in _runs(value))


def plain(value: object) -> str:
    """*value* HTML-escaped for an attribute or a text-only element (``<title>``): control and
    format characters as escapes, no markup."""
    return html.escape(visible(value), quote=True)


def _attr_value(name: str, value: object) -> str:
    if isinstance(value, float):
        value = f"{value:.2f}".rstrip("0").rstrip(".")
    shown = str(value)
    if name == "href" and not shown.startswith("#"):
        # Only links inside the page: an attacker-written URL must never become clickable.
        raise ValueError(f"href {visible(shown)!r}: only in-page links (#id) are allowed in the report")
    return plain(shown)


def attrs_html(attrs: Mapping[str, object] | None) -> str:
    """Attributes as HTML; ``None``/``False`` omitted, ``True`` bare. Names are code, values text."""
    parts = []
    for name, value in (attrs or {}).items():
        if not _ATTR.match(name) or name.lower().startswith("on") or name.lower() == "style":
            # Event handlers and style attributes never carry data here (the CSP forbids them too).
            raise ValueError(f"attribute {name!r} is not allowed in the report")
        if value is None or value is False:
            continue
        parts.append(f" {name}" if value is True else f' {name}="{_attr_value(name, value)}"')
    return "".join(parts)


def children_html(children: Iterable[Any], *, as_plain: bool = False) -> str:
    out: list[str] = []
    for child in children:
        if child is None:
            continue
        if isinstance(child, Markup):
            out.append(child)
        elif isinstance(child, (str, int, float)) or not isinstance(child, Iterable):
            out.append(plain(child) if as_plain else text(child))
        else:
            out.append(children_html(child, as_plain=as_plain))
    return "".join(out)


def el(tag: str, attrs: Mapping[str, object] | None = None, *children: Any) -> Markup:
    """``<tag attrs>children</tag>``: strings among *children* are text, :class:`Markup` is kept."""
    if not _TAG.match(tag) or tag in {"script", "iframe", "object", "embed", "foreignObject"}:
        raise ValueError(f"element {tag!r} is not allowed in the report")
    if tag in VOID:
        if children:
            raise ValueError(f"<{tag}> cannot have children")
        return Markup(f"<{tag}{attrs_html(attrs)}>")
    inner = children_html(children, as_plain=tag in PLAIN_TEXT)
    return Markup(f"<{tag}{attrs_html(attrs)}>{inner}</{tag}>")


def join(parts: Iterable[Any], sep: Any = "") -> Markup:
    """*parts* (text or Markup) joined by *sep*, as one Markup."""
    sep_html = children_html([sep])
    return Markup(sep_html.join(children_html([p]) for p in parts))


def json_for_script(doc: Any) -> str:
    """*doc* as JSON that is safe between ``<script type="application/json">`` tags.

    ``<``, ``>`` and ``&`` become ``\\u003c``/``\\u003e``/``\\u0026`` (so neither ``</script>`` nor
    ``<!--`` can end or confuse the block) and every non-ASCII character, U+2028/U+2029 included,
    is a ``\\u`` escape. ``JSON.parse`` of the block's text gives *doc* back exactly.
    """
    encoded = json.dumps(doc, ensure_ascii=True, default=str, separators=(",", ":"))
    return (
        encoded.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def json_block(element_id: str, doc: Any) -> Markup:
    """A data block (never executed: ``type="application/json"``) holding *doc*."""
    return Markup(f'<script type="application/json"{attrs_html({"id": element_id})}>{json_for_script(doc)}</script>')
