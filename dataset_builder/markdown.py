"""Text taken from the data (object names, licences, file names, model and generator ids) made safe to put into the
dataset card, which the Hub renders as Markdown with raw HTML allowed: nothing in it may become a tag, a link, an
image, emphasis or a table cell boundary.

- ``text``: escaped for HTML (``& < >``) and for Markdown (a backslash before each character that could start
  inline syntax; an underscore between letters or digits cannot, so ``snake_case`` names stay as they are), on one
  line (a line break could start a heading or a new table row).
- ``code``: a code span, which renderers show literally, where the value allows one (no backtick, pipe or line
  break); otherwise the same as ``text``.
"""

from __future__ import annotations

import html
import re

from .errors import one_line

_INLINE_SYNTAX = re.compile(r"[\\`*\[\]|~!#]|(?<![^\W_])_|_(?![^\W_])")
_LINE_BREAKS = re.compile(r"\s*[\r\n\u2028\u2029]+\s*")


def text(value) -> str:
    """``value`` as plain text inside Markdown and HTML."""
    flat = one_line(_LINE_BREAKS.sub(" ", str(value)))
    return html.escape(_INLINE_SYNTAX.sub(lambda found: "\\" + found.group(0), flat), quote=False)


def code(value) -> str:
    """``value`` as a code span, or as escaped plain text where a code span could not hold it."""
    value = str(value)
    if value and not re.search(r"[`|\r\n\u2028\u2029]", value) and value.isprintable():
        return f"`{value}`"
    return text(value)
