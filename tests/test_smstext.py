"""The SMS composer: cost, encodings, transliteration, templates and trimming, by example."""

from __future__ import annotations

import unicodedata

import pytest

from forwarder.text import smstext
from forwarder.text.smstext import (
    ELLIPSIS_GSM7,
    ELLIPSIS_UCS2,
    FALLBACK_TEXT,
    SMS_MAX_CHARS,
    SmsOptions,
    count_segments,
    fit,
    grapheme_boundaries,
    is_gsm7,
    to_gsm7,
    validate_template,
)
from forwarder.text.translit import transliterate

# -- segments (3GPP TS 23.038 / 23.040) -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("a", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters take two septets
        ("€" * 81, 2),
        # 152 + an escape pair does not fit in the first 153-septet part, and the pair is
        # never split: three parts, where naive arithmetic (306 / 153) says two.
        ("a" * 152 + "€" + "a" * 152, 3),
    ],
)
def test_gsm7_segments(text: str, segments: int) -> None:
    assert count_segments(text, "gsm7") == segments


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("ж", 1),
        ("ж" * 70, 1),
        ("ж" * 71, 2),
        ("ж" * 134, 2),
        ("ж" * 135, 3),
        ("😀" * 35, 1),  # outside the BMP: a surrogate pair, two UTF-16 units
        ("😀" * 36, 2),
        ("ж" * 66 + "😀" + "ж" * 66, 3),  # a surrogate pair is never split across parts
    ],
)
def test_ucs2_segments(text: str, segments: int) -> None:
    assert count_segments(text, "ucs2") == segments


# -- GSM-7 ----------------------------------------------------------------------------------------


def test_gsm7_alphabet() -> None:
    assert is_gsm7("Hello @£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¡ÄÖÑÜ§¿äöñüà {}[]~\\^|€\n")
    assert not is_gsm7("’")
    assert not is_gsm7("ж")
    assert not is_gsm7("ç")  # GSM-7 has only the capital
    assert not is_gsm7("\r")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It’s “quoted” – fine… ok", 'It\'s "quoted" - fine... ok'),
        ("non\u00a0breaking\u202fspaces", "non breaking spaces"),
        ("Привіт, Їжак!", "Pryvit, Yizhak!"),  # і/ї: Ukrainian
        ("Привет, ёжик!", "Privet, ezhik!"),  # no Ukrainian letters: Russian (ICAO)
        ("Zażółć gęślą jaźń", "Zazolc gesla jazn"),
        ("łódź", "lodz"),
        ("Café ç", "Café Ç"),
        ("Ωmega αβγ", "Ωmega ABΓ"),
        ("ok 👍🏽 done ✅", "ok done "),
        ("flag 🇺🇦!", "flag !"),
        ("№5 ™", "No5 TM"),
        ("中文", "??"),
    ],
)
def test_to_gsm7(text: str, expected: str) -> None:
    assert to_gsm7(text, smstext.translit.guess_standard(text)) == expected


# -- transliteration ------------------------------------------------------------------------------

#: Examples from the table of KMU resolution No. 55 (2010).
KMU_EXAMPLES = {
    "Алушта": "Alushta",
    "Андрій": "Andrii",
    "Борщагівка": "Borshchahivka",
    "Вінниця": "Vinnytsia",
    "Гадяч": "Hadiach",
    "Згорани": "Zghorany",
    "Розгон": "Rozghon",
    "Ґалаґан": "Galagan",
    "Дон": "Don",
    "Рівне": "Rivne",
    "Єнакієве": "Yenakiieve",
    "Наєнко": "Naienko",
    "Житомир": "Zhytomyr",
    "Запоріжжя": "Zaporizhzhia",
    "Медвин": "Medvyn",
    "Іршава": "Irshava",
    "Їжакевич": "Yizhakevych",
    "Кадиївка": "Kadyivka",
    "Йосипівка": "Yosypivka",
    "Стрий": "Stryi",
    "Олексій": "Oleksii",
    "Київ": "Kyiv",
    "Лебедин": "Lebedyn",
    "Миколаїв": "Mykolaiv",
    "Ніжин": "Nizhyn",
    "Одеса": "Odesa",
    "Полтава": "Poltava",
    "Решетилівка": "Reshetylivka",
    "Суми": "Sumy",
    "Тернопіль": "Ternopil",
    "Ужгород": "Uzhhorod",
    "Фастів": "Fastiv",
    "Харків": "Kharkiv",
    "Біла Церква": "Bila Tserkva",
    "Чернівці": "Chernivtsi",
    "Шостка": "Shostka",
    "Гоща": "Hoshcha",
    "Юрій": "Yurii",
    "Корюківка": "Koriukivka",
    "Яготин": "Yahotyn",
    "Костянтин": "Kostiantyn",
    "Знам'янка": "Znamianka",
    "Знам’янка": "Znamianka",
    "Феодосія": "Feodosiia",
    "ЩУКА": "SHCHUKA",
    "Щука": "Shchuka",
}

ICAO_EXAMPLES = {
    "Юрий Гагарин": "Iurii Gagarin",
    "Щёлково": "Shchelkovo",
    "Объявление": "Obieiavlenie",
    "Эхо": "Ekho",
    "Выход": "Vykhod",
    "Хабаровск": "Khabarovsk",
    "Цой": "Tsoi",
    "Мягкий": "Miagkii",
}


@pytest.mark.parametrize(("cyrillic", "latin"), KMU_EXAMPLES.items())
def test_ukrainian_national_transliteration(cyrillic: str, latin: str) -> None:
    assert transliterate(cyrillic, "uk") == latin


@pytest.mark.parametrize(("cyrillic", "latin"), ICAO_EXAMPLES.items())
def test_russian_icao_transliteration(cyrillic: str, latin: str) -> None:
    assert transliterate(cyrillic, "ru") == latin


def test_transliteration_keeps_quotes_and_latin() -> None:
    assert transliterate("'Київ' is Kyiv", "uk") == "'Kyiv' is Kyiv"


def test_unknown_standard_is_refused() -> None:
    with pytest.raises(ValueError, match="transliteration"):
        transliterate("x", "de")


# -- templates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        smstext.DEFAULT_TEMPLATE,
        "{subject}",
        "[{rule}] {from_addr} → {to} in {folder} at {date}: {body}",
        "literal {{braces}} are fine: {subject}",
        "no fields at all",
    ],
)
def test_valid_templates(template: str) -> None:
    assert validate_template(template) is None


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ("{sender}", "unknown field {sender}"),
        ("{subject", "stray brace"),
        ("subject}", "stray brace"),
        ("{}", "unknown field {}"),
        ("{0}", "unknown field {0}"),
        ("{body.upper}", "unknown field {body.upper}"),
        ("{body:10}", "format spec"),
        ("{subject!r}", "format spec"),
        ("   ", "empty"),
    ],
)
def test_invalid_templates_are_explained(template: str, complaint: str) -> None:
    message = validate_template(template)
    assert message is not None and complaint in message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"template": "{nope}"},
        {"max_length": 0},
        {"max_length": SMS_MAX_CHARS + 1},
        {"max_length": True},
        {"encoding": "utf8"},
        {"transliterate": "de"},
        {"max_segments": 0},
    ],
)
def test_options_are_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SmsOptions(**kwargs)  # type: ignore[arg-type]


# -- fit ------------------------------------------------------------------------------------------

FIELDS = {"from_name": "Ann", "subject": "Server down", "body": "Disk full on db1."}


def test_fit_fills_the_template() -> None:
    sms = fit(FIELDS, SmsOptions())
    assert (sms.text, sms.encoding, sms.segments, sms.length) == (
        "Ann: Server down\nDisk full on db1.",
        "gsm7",
        1,
        34,
    )


def test_missing_fields_are_empty_and_braces_in_content_are_text() -> None:
    sms = fit({"subject": "{body} costs {{5}}"}, SmsOptions(template="{from_name}|{subject}"))
    assert sms.text == "|{body} costs {{5}}"


def test_typography_is_normalised_to_stay_gsm7() -> None:
    sms = fit({**FIELDS, "body": "It’s “down” – again…"}, SmsOptions())
    assert sms.encoding == "gsm7"
    assert sms.text.endswith('It\'s "down" - again...')


def test_cyrillic_makes_ucs2_unless_transliterated() -> None:
    fields = {**FIELDS, "body": "Диск заповнений"}
    assert fit(fields, SmsOptions()).encoding == "ucs2"
    sms = fit(fields, SmsOptions(transliterate="uk"))
    assert (sms.text, sms.encoding) == ("Ann: Server down\nDysk zapovnenyi", "gsm7")


def test_forced_ucs2_keeps_typography() -> None:
    sms = fit({**FIELDS, "body": "It’s"}, SmsOptions(encoding="ucs2"))
    assert (sms.text.splitlines()[-1], sms.encoding) == ("It’s", "ucs2")


def test_forced_gsm7_transliterates_and_drops_emoji() -> None:
    options = SmsOptions(template="{subject}", encoding="gsm7")
    sms = fit({"subject": "Рахунок 🔥 сплачено"}, options)
    assert (sms.text, sms.encoding) == ("Rakhunok splacheno", "gsm7")
    sms = fit(
        {"subject": "Рахунок 🔥 сплачено"},
        SmsOptions(template="{subject}", encoding="gsm7", transliterate="uk"),
    )
    assert sms.text == "Rakhunok splacheno"


def test_invisible_and_control_characters_are_removed() -> None:
    body = "a\u200bb\u202ec\u2066d\x07e\ufeff\u00adf\r\ng\th"
    sms = fit({"body": body}, SmsOptions(template="{body}"))
    assert sms.text == "abcdef\ng h"


def test_unicode_is_nfc() -> None:
    sms = fit({"body": "Cafe\u0301"}, SmsOptions(template="{body}", encoding="ucs2"))
    assert sms.text == "Café"


def test_body_is_cut_first_at_a_word_with_an_ellipsis() -> None:
    fields = {**FIELDS, "body": "alpha beta gamma delta epsilon zeta eta theta"}
    sms = fit(fields, SmsOptions(max_length=40))
    assert sms.text == "Ann: Server down\nalpha beta gamma..."
    assert sms.length <= 40


def test_ucs2_ellipsis_is_one_character() -> None:
    fields = {"subject": "Тема", "body": "один два три чотири пʼять шість сім"}
    sms = fit(fields, SmsOptions(template="{subject}: {body}", max_length=25))
    assert sms.text == "Тема: один два три…"
    assert sms.text.endswith(ELLIPSIS_UCS2)


def test_subject_is_cut_after_the_body_is_gone() -> None:
    fields = {"from_name": "Ann", "subject": "a very long subject " * 10, "body": "body text"}
    sms = fit(fields, SmsOptions(max_length=30))
    assert sms.text.startswith("Ann: a very long subject")
    assert sms.text.endswith(ELLIPSIS_GSM7)
    assert "body" not in sms.text
    assert sms.length <= 30


def test_sender_survives_longest() -> None:
    fields = {"from_name": "Ann Smith", "subject": "x" * 50, "body": "y" * 50}
    assert fit(fields, SmsOptions(max_length=12)).text == "Ann Smith:"


def test_long_template_text_is_cut_as_a_whole() -> None:
    sms = fit({}, SmsOptions(template="word " * 150, max_length=20))
    assert sms.text == "word word word..."


def test_everything_empty_sends_the_fallback() -> None:
    assert fit({}, SmsOptions(template="{body}")).text == FALLBACK_TEXT


def test_tiny_limits_still_give_text() -> None:
    assert fit({"body": "hello world"}, SmsOptions(template="{body}", max_length=1)).text == "h"
    assert fit({"body": "👍"}, SmsOptions(template="{body}", max_length=1)).text == "?"


def test_max_segments_caps_cost() -> None:
    body = "word " * 200
    sms = fit({"body": body}, SmsOptions(template="{body}", max_segments=1))
    assert sms.segments == 1 and len(sms.text) <= 160
    sms = fit({"body": "слово " * 200}, SmsOptions(template="{body}", max_segments=2))
    assert sms.segments == 2 and sms.encoding == "ucs2" and len(sms.text) <= 134


def test_auto_switches_to_gsm7_when_trimming_removed_all_cyrillic() -> None:
    body = "English text " * 50 + "а кінець українською"
    sms = fit({"body": body}, SmsOptions(template="{body}", max_length=100))
    assert sms.encoding == "gsm7"
    assert sms.text.endswith(ELLIPSIS_GSM7)


@pytest.mark.parametrize(
    "body",
    [
        "x" * 8 + "e\u0301\u0302\u0303",  # combining marks (not composable)
        "x" * 8 + "👩\u200d💻",  # ZWJ sequence
        "x" * 8 + "🇺🇦",  # flag: a regional-indicator pair
        "x" * 8 + "👍🏽",  # skin-tone modifier
    ],
)
def test_cuts_never_split_a_grapheme_cluster(body: str) -> None:
    body = unicodedata.normalize("NFC", body)
    for limit in range(1, len(body) + 2):
        text = fit(
            {"body": body}, SmsOptions(template="{body}", encoding="ucs2", max_length=limit)
        ).text
        kept = text.removesuffix(ELLIPSIS_UCS2)
        assert kept == "?" or len(kept) in grapheme_boundaries(body), (limit, text)


def test_grapheme_boundaries() -> None:
    assert grapheme_boundaries("ae\u0301b") == [0, 1, 3, 4]
    assert grapheme_boundaries("🇺🇦🇵🇱") == [0, 2, 4]
    assert grapheme_boundaries("👩\u200d💻!") == [0, 3, 4]


def test_a_long_run_of_invisible_characters_does_not_hide_the_text() -> None:
    body = "\u200b" * 5000 + "visible text"
    assert fit({"body": body}, SmsOptions(template="{body}")).text == "visible text"


def test_only_the_start_of_a_huge_body_is_worked_on() -> None:
    body = "word " * 200_000
    sms = fit({"body": body}, SmsOptions(template="{body}"))
    assert sms.length <= SMS_MAX_CHARS and sms.text.endswith(ELLIPSIS_GSM7)
