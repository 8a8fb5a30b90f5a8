"""Properties of the SMS composer for arbitrary text, templates and options (Hypothesis)."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder.text.smstext import (
    ELLIPSIS_UCS2,
    SMS_MAX_CHARS,
    TEMPLATE_FIELDS,
    SmsOptions,
    clean_field,
    count_segments,
    fit,
    is_gsm7,
    sms_length,
    validate_template,
)

ZWJ = "\u200d"

#: Characters that make composing hard: every script and symbol class we handle, plus
#: combining marks, joiners, flags, skin tones, GSM-7 extension characters, controls.
TRICKY = st.sampled_from(
    list("aZ09 \n\t.,;:!?-_'\"{}[]~\\^|€@£$¥èéÇØΔ")
    + list("жЖїЇєґщЩ’“”–—…«»\u00a0")
    + ["\u0301", "\u0308", "\u20dd", ZWJ, "\ufe0f", "\U0001f3fd", "\U0001f1fa", "\U0001f1e6"]
    + ["👍", "👩", "💻", "🔥", "中", "한", "\u200b", "\u202e", "\x07", "\r", "\ufffd", "\udc80"]
)
TEXT = st.one_of(
    st.text(max_size=60),
    st.lists(TRICKY, max_size=400).map("".join),
    st.lists(
        st.sampled_from(["word", "слово", "👩\u200d💻", "🇺🇦", "e\u0301", " ", "\n"]), max_size=200
    ).map("".join),
)
FIELD_NAMES = sorted(TEMPLATE_FIELDS)


@st.composite
def templates(draw: st.DrawFn) -> str:
    """Valid templates: literal text (braces doubled) and known fields."""
    pieces = draw(
        st.lists(
            st.one_of(
                st.sampled_from(FIELD_NAMES).map(lambda name: "{" + name + "}"),
                st.lists(TRICKY, max_size=12).map(
                    lambda s: "".join(s).replace("{", "{{").replace("}", "}}")
                ),
            ),
            min_size=1,
            max_size=6,
        )
    )
    template = "".join(pieces)
    return template if template.strip() else "{body}"


OPTIONS = st.builds(
    SmsOptions,
    template=templates(),
    max_length=st.integers(min_value=1, max_value=SMS_MAX_CHARS),
    encoding=st.sampled_from(["auto", "gsm7", "ucs2"]),
    transliterate=st.sampled_from(["off", "uk", "ru"]),
    max_segments=st.one_of(st.none(), st.integers(min_value=1, max_value=4)),
)
FIELDS = st.dictionaries(st.sampled_from(FIELD_NAMES), TEXT, max_size=len(FIELD_NAMES))


@settings(max_examples=400, deadline=None)
@given(fields=FIELDS, options=OPTIONS)
def test_fit_respects_every_limit(fields: dict[str, str], options: SmsOptions) -> None:
    assert validate_template(options.template) is None
    sms = fit(fields, options)
    assert sms.text
    assert sms.length == sms_length(sms.text) <= options.max_length <= SMS_MAX_CHARS
    assert sms.segments == count_segments(sms.text, sms.encoding)
    if options.max_segments is not None:
        assert sms.segments <= options.max_segments
    if sms.encoding == "gsm7":
        assert is_gsm7(sms.text)
    if options.encoding == "gsm7":
        assert sms.encoding == "gsm7"
    assert not sms.text.endswith(ZWJ)
    assert "\r" not in sms.text and "\ufffd" not in sms.text
    sms.text.encode("utf-8")  # no lone surrogates: the gateway mail must be encodable


def _splits_a_cluster(text: str, cut: int) -> bool:
    """An independent statement of where a cut is wrong (UAX #29 in the small)."""
    if cut <= 0 or cut >= len(text):
        return False
    before, after = text[cut - 1], text[cut]
    if unicodedata.category(after).startswith("M") or after == ZWJ or before == ZWJ:
        return True
    if 0x1F3FB <= ord(after) <= 0x1F3FF:  # skin-tone modifier
        return True
    regional = 0
    while cut - regional > 0 and 0x1F1E6 <= ord(text[cut - regional - 1]) <= 0x1F1FF:
        regional += 1
    return 0x1F1E6 <= ord(after) <= 0x1F1FF and regional % 2 == 1


@settings(max_examples=400, deadline=None)
@given(body=TEXT, limit=st.integers(min_value=1, max_value=80))
def test_trimmed_text_never_ends_inside_a_grapheme_cluster(body: str, limit: int) -> None:
    options = SmsOptions(template="{body}", encoding="ucs2", max_length=limit)
    sms = fit({"body": body}, options)
    full = clean_field(body, multiline=True)
    if sms.text in (full, "(no text)", "?"):
        return
    kept = sms.text.removesuffix(ELLIPSIS_UCS2)
    assert full.startswith(kept), (full, sms.text)
    assert not _splits_a_cluster(full, len(kept)), (full, sms.text)
