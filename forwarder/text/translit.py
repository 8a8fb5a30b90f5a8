"""Cyrillic to Latin transliteration, so an SMS can travel as cheap GSM-7 instead of UCS-2.

Two official standards, chosen because people read them every day on their documents:

* ``uk``: the Ukrainian national system, Cabinet of Ministers of Ukraine resolution
  No. 55 of 27 January 2010 (passports, road signs).  It is position-dependent:
  є ї й ю я are ``ye yi y yu ya`` at the start of a word and ``ie i i iu ia`` elsewhere;
  "зг" is ``zgh`` so it is not read as ж (``zh``); the soft sign and the apostrophe
  are not rendered.
* ``ru``: ICAO Doc 9303 (7th edition, part 3), the system of Russian foreign passports
  since 2013 (order of the Federal Migration Service No. 320 of 15 October 2012).
  Unlike ГОСТ 7.79-2000 system B it uses letters only (ГОСТ writes ъ as two backticks
  and ц as ``c`` or ``cz``), which suits SMS.  ё → ``e``, й → ``i``, ъ → ``ie``, ь → nothing.

Each standard also covers the other language's letters, so mixed text never keeps stray
Cyrillic: ICAO has і ї є ґ itself, and ``uk`` takes ICAO's values for ы э ё ъ.  Case
is preserved: ``Щука`` → ``Shchuka``, ``ЩУКА`` → ``SHCHUKA``.
"""

from __future__ import annotations

import re

STANDARDS = ("uk", "ru")

#: Apostrophes that mark separate pronunciation inside Ukrainian words (м'ясо).
APOSTROPHES = "'’ʼ"

#: Letters of other Cyrillic alphabets, so that no Cyrillic survives (a best effort).
_OTHER_CYRILLIC = {
    "ў": "u",
    "ј": "j",
    "љ": "lj",
    "њ": "nj",
    "ђ": "dj",
    "ћ": "c",
    "џ": "dz",
    "ѕ": "dz",
    "ѓ": "gj",
    "ќ": "kj",
    "ә": "a",
    "ө": "o",
    "ү": "u",
    "ұ": "u",
    "қ": "k",
    "ғ": "g",
    "ң": "n",
    "һ": "h",
    "ӏ": "",
}

#: ICAO Doc 9303, Russian and Ukrainian letters.
_ICAO = {
    "а": "a",
    "б": "b",
    "в": "v",
    "г": "g",
    "д": "d",
    "е": "e",
    "ё": "e",
    "ж": "zh",
    "з": "z",
    "и": "i",
    "й": "i",
    "к": "k",
    "л": "l",
    "м": "m",
    "н": "n",
    "о": "o",
    "п": "p",
    "р": "r",
    "с": "s",
    "т": "t",
    "у": "u",
    "ф": "f",
    "х": "kh",
    "ц": "ts",
    "ч": "ch",
    "ш": "sh",
    "щ": "shch",
    "ъ": "ie",
    "ы": "y",
    "ь": "",
    "э": "e",
    "ю": "iu",
    "я": "ia",
    "і": "i",
    "ї": "i",
    "є": "ie",
    "ґ": "g",
    **_OTHER_CYRILLIC,
}

#: KMU No. 55 (2010): (elsewhere, at the start of a word).
_KMU = {
    **_ICAO,
    "г": "h",
    "ґ": "g",
    "и": "y",
    "і": "i",
    "х": "kh",
    "ь": "",
    "є": ("ie", "ye"),
    "ї": ("i", "yi"),
    "й": ("i", "y"),
    "ю": ("iu", "yu"),
    "я": ("ia", "ya"),
}

_TABLES: dict[str, dict[str, str | tuple[str, str]]] = {"uk": _KMU, "ru": _ICAO}

_CYRILLIC_OR_APOSTROPHE = re.compile(f"[\u0400-\u04ff{APOSTROPHES}]")
_UKRAINIAN_LETTERS = re.compile("[іїєґІЇЄҐ]")
_CYRILLIC = re.compile("[\u0400-\u04ff]")


def has_cyrillic(text: str) -> bool:
    return _CYRILLIC.search(text) is not None


def guess_standard(text: str) -> str:
    """``uk`` if ``text`` has letters only Ukrainian uses (і ї є ґ), else ``ru``."""
    return "uk" if _UKRAINIAN_LETTERS.search(text) else "ru"


def _is_letter(text: str, i: int) -> bool:
    return 0 <= i < len(text) and text[i].isalpha()


def _word_start(text: str, i: int) -> bool:
    """True if position ``i`` begins a word; an apostrophe inside a word does not break it."""
    before = i - 1
    if before >= 0 and text[before] in APOSTROPHES:
        before -= 1
    return not _is_letter(text, before)


def _all_caps_word(text: str, i: int) -> bool:
    """True if the uppercase letter at ``i`` belongs to an all-caps word (ЩУКА, not Щука)."""
    if _is_letter(text, i + 1):
        return text[i + 1].isupper()
    return _is_letter(text, i - 1) and text[i - 1].isupper()


def transliterate(text: str, standard: str) -> str:
    """``text`` with every Cyrillic letter replaced by its Latin form in ``standard`` (uk|ru)."""
    if standard not in _TABLES:
        raise ValueError(f"unknown transliteration standard {standard!r}; use one of {STANDARDS}")
    if not has_cyrillic(text):
        return text
    table = _TABLES[standard]

    def replace(match: re.Match[str]) -> str:
        i = match.start()
        char = match.group()
        if char in APOSTROPHES:
            # Not rendered inside a word (KMU 55, note 2); a quotation mark stays.
            inside = _is_letter(text, i - 1) and _is_letter(text, i + 1)
            return "" if inside and has_cyrillic(text[i - 1 : i + 2]) else char
        lower = char.lower()
        latin = table.get(lower)
        if latin is None:
            return char
        if isinstance(latin, tuple):
            latin = latin[1] if _word_start(text, i) else latin[0]
        elif standard == "uk" and lower == "г" and i > 0 and text[i - 1] in "зЗ":
            latin = "gh"  # KMU 55: "зг" is "zgh", so that it differs from ж ("zh")
        if char == lower or not latin:
            return latin
        return latin.upper() if _all_caps_word(text, i) else latin.capitalize()

    return _CYRILLIC_OR_APOSTROPHE.sub(replace, text)
