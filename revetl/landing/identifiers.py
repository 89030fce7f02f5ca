"""The blank rule for identifiers, on the Python side (README "Identity resolution", rules 1-2).

An identifier is trimmed of, and is blank when it holds nothing but, the characters of BLANK:
every character Python's `str.isspace()` accepts (Unicode's White_Space property: tab, newline,
vertical tab, form feed, carriage return, space, NEL U+0085, no-break space U+00A0, ogham space
U+1680, the spaces U+2000-U+200A, line and paragraph separators U+2028-U+2029, narrow no-break
space U+202F, medium mathematical space U+205F, ideographic space U+3000; and the ASCII
information separators U+001C-U+001F, which Python also counts) plus six invisible characters that
are not whitespace to Unicode but that nobody can see in a form or a CSV cell either: Mongolian
vowel separator U+180E, zero-width space U+200B, zero-width non-joiner U+200C, zero-width joiner
U+200D, word joiner U+2060 and the byte order mark U+FEFF. Only the ends are trimmed: a character
of the set inside a value is kept.

The SQL side writes the same set once, in `macros/identity.sql` (`blank_code_points`);
tests/test_identifiers.py builds the models on every character of the set and on its neighbours
and checks that both sides agree.
"""

from __future__ import annotations

__all__ = ["BLANK", "is_blank", "strip_blank"]

BLANK = (
    "\t\n\x0b\x0c\r"  # U+0009-U+000D
    "\x1c\x1d\x1e\x1f"  # information separators (str.isspace() counts them)
    " "  # U+0020
    "\x85\xa0"  # next line, no-break space
    "\u1680\u180e"  # ogham space mark, Mongolian vowel separator
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"  # en quad ... hair space
    "\u200b\u200c\u200d"  # zero-width space, non-joiner, joiner
    "\u2028\u2029\u202f\u205f\u2060"  # line/paragraph separator, narrow nbsp, math space, word joiner
    "\u3000\ufeff"  # ideographic space, byte order mark
)


def strip_blank(text: str) -> str:
    """`text` without the characters of BLANK at either end."""
    return text.strip(BLANK)


def is_blank(value: str | None) -> bool:
    """True for None, "" and text made only of characters of BLANK."""
    return value is None or not value.strip(BLANK)
