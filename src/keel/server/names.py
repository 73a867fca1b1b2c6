"""User names as identifiers: one canonical spelling per user, and a skeleton to catch lookalikes.

A user name is what someone types to log in; it is never an identity by itself (a
:class:`~keel.registry.principal.Principal` carries the stable id). :func:`normalize_name`
refuses anything that could let two spellings pass for one person (case, width, invisible
characters, mixed scripts), and :func:`skeleton` maps a name to the Latin letters it looks
like, so a new user too like an existing one can be refused.
"""

from __future__ import annotations

import unicodedata

from keel.errors import KeelError

MAX_LENGTH = 64
ACCEPTED = (
    f"a user name is 1 to {MAX_LENGTH} letters, digits 0-9, '.', '-' or '_', starts with a letter, "
    "is written in one script and holds no spaces (for example 'maria.lopez'); "
    "a person's full name or e-mail address goes in the display name"
)
_PUNCTUATION = frozenset(".-_")
# scripts whose letters are written together in one name (Japanese and Korean mix Han with kana
# or Hangul)
_SCRIPT_GROUPS = {
    "CJK": "HAN",
    "HIRAGANA": "HAN",
    "KATAKANA": "HAN",
    "HANGUL": "HAN",
    "BOPOMOFO": "HAN",
}
_CONTROL_NAMES = {
    "\t": "TAB",
    "\n": "LINE FEED",
    "\r": "CARRIAGE RETURN",
    "\x0b": "LINE TABULATION",
    "\x0c": "FORM FEED",
    "\x85": "NEXT LINE",
    "\x00": "NULL",
}
# Cyrillic, Greek and rare Latin letters that look like plain Latin ones in common fonts (after
# casefold)
_CONFUSABLES = str.maketrans(
    "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456"  # Cyrillic
    "\u0458\u0455\u0501\u04bb\u051b\u051d\u04cf\u043a"
    "\u03b1\u03b5\u03b9\u03ba\u03bd\u03bf\u03c1\u03c5\u03c7\u03b3\u03c9"  # Greek
    "\u0131\u0251\u0261\u0269",  # Latin dotless i, alpha, script g, iota
    "aeopcyxijsdhqwlk"  # Cyrillic
    "aeikvopuxyw"  # Greek
    "iagi",
)


class NameRefused(KeelError, ValueError):
    """A user name breaks a naming rule, or is the same as or too like an existing user's name."""

    exit_code = 2


def _describe(char: str) -> str:
    """A character as 'U+200B (ZERO WIDTH SPACE)', readable even when invisible."""
    name = unicodedata.name(char, "") or _CONTROL_NAMES.get(char, "a control character")
    return f"U+{ord(char):04X} ({name})"


def _script(char: str) -> str:
    """The script of a letter, the first word of its Unicode name (LATIN, CYRILLIC, GREEK, ...)."""
    word = unicodedata.name(char, "UNKNOWN").split()[0]
    return _SCRIPT_GROUPS.get(word, word)


def _refuse(text: str, rule: str) -> NameRefused:
    return NameRefused(f"user name {text!r} is refused: {rule}; {ACCEPTED}")


def normalize_name(text: str) -> str:
    """The canonical form of a user name (NFKC, then casefold).

    Raises :class:`NameRefused` naming the rule broken.
    """
    if not text.strip():
        raise _refuse(text, "it is empty or blank")
    for index, char in enumerate(text):
        if char.isspace():
            raise _refuse(text, f"it holds whitespace {_describe(char)} at position {index}")
        if unicodedata.category(char) in ("Cc", "Cf"):
            raise _refuse(
                text,
                f"it holds the invisible control or format character {_describe(char)} "
                f"at position {index}",
            )
    name = unicodedata.normalize("NFKC", text).casefold()
    after_letter = False  # an accent (combining mark) is part of the letter before it
    for char in name:
        category = unicodedata.category(char)
        letter_or_accent = category.startswith("L") or (category.startswith("M") and after_letter)
        if not (letter_or_accent or char in "0123456789" or char in _PUNCTUATION):
            raise _refuse(
                text,
                f"it holds {char!r} {_describe(char)}, which is not a letter, a digit 0-9, "
                "'.', '-' or '_'",
            )
        after_letter = letter_or_accent
    if not unicodedata.category(name[0]).startswith("L"):
        raise _refuse(text, f"it starts with {name[0]!r}, not a letter")
    scripts = sorted({_script(char) for char in name if unicodedata.category(char).startswith("L")})
    if len(scripts) > 1:
        raise _refuse(text, f"it mixes the scripts {', '.join(scripts)}")
    if len(name) > MAX_LENGTH:
        raise _refuse(text, f"it is {len(name)} characters long, more than {MAX_LENGTH}")
    return name


def skeleton(name: str) -> str:
    """How ``name`` looks: accents dropped, casefolded, Cyrillic and Greek lookalikes as Latin."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return bare.casefold().translate(_CONFUSABLES)
