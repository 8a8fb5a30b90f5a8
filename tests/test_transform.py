"""body_text and render on hand-made mails: every MIME shape and charset, with the exact text."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage

import pytest

from forwarder.mail import Mail
from forwarder.text import transform
from forwarder.text.smstext import SmsOptions
from forwarder.text.transform import body_text, render

KYIV = timezone(timedelta(hours=2))
NOW = datetime(2024, 11, 25, 15, 0, tzinfo=KYIV)

UKRAINIAN = "Добрий день! Рахунок 15 сплачено, дякуємо. Ґанок і їжак."
RUSSIAN = "Здравствуйте! Счёт 15 оплачен, спасибо."


def mail_of(message: EmailMessage, **kwargs: object) -> Mail:
    """The message as the daemon sees it: serialised to bytes and parsed back."""
    return Mail(message.as_bytes(), **kwargs)  # type: ignore[arg-type]


def text_message(
    text: str,
    *,
    charset: str = "utf-8",
    cte: str = "8bit",
    subtype: str = "plain",
    subject: str = "Hello",
    sender: str = "Ann Smith <ann@example.com>",
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "me@example.org"
    message["Subject"] = subject
    message["Date"] = "Mon, 25 Nov 2024 14:03:00 +0200"
    message.set_content(text, subtype=subtype, charset=charset, cte=cte)
    return message


def body_of(message: EmailMessage) -> str:
    return body_text(mail_of(message).message)


# -- charsets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("utf-8", UKRAINIAN),
        ("windows-1251", UKRAINIAN),
        ("koi8-u", UKRAINIAN),
        ("koi8-r", RUSSIAN),
        ("iso-8859-5", RUSSIAN),
        ("cp866", RUSSIAN),
        ("iso-2022-jp", "会議は明日の十時です。"),
        ("iso-8859-1", "Réunion à 10h, café compris."),
    ],
)
@pytest.mark.parametrize("cte", ["8bit", "quoted-printable", "base64"])
def test_declared_charsets_decode(charset: str, text: str, cte: str) -> None:
    if charset == "iso-2022-jp" and cte == "8bit":
        cte = "7bit"  # ISO-2022-JP is a 7-bit charset
    assert body_of(text_message(text, charset=charset, cte=cte)) == text


@pytest.mark.parametrize(
    ("actual", "declared", "text"),
    [
        ("windows-1251", "iso-8859-1", RUSSIAN),  # wrong label
        ("utf-8", "iso-8859-1", "Grüße, Jürgen — schön!"),  # UTF-8 labelled Latin-1
        ("windows-1251", "koi8-r", RUSSIAN),  # the other Cyrillic table
        ("koi8-u", "windows-1251", UKRAINIAN),
        ("windows-1251", "us-ascii", UKRAINIAN),  # 8-bit "ASCII"
        ("windows-1251", "x-unknown", UKRAINIAN),
        ("utf-8", "utf-8", UKRAINIAN),
    ],
)
def test_wrong_charset_labels_fall_back_to_detection(actual: str, declared: str, text: str) -> None:
    message = text_message(text, charset=actual, cte="8bit")
    message.set_param("charset", declared)
    assert body_of(message) == text


def test_8bit_body_without_charset_is_detected() -> None:
    raw = (
        b"From: ann@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain\r\n\r\n" + UKRAINIAN.encode("windows-1251") + b"\r\n"
    )
    assert body_text(Mail(raw).message) == UKRAINIAN


def test_a_nul_byte_in_the_charset_label_is_survived() -> None:
    raw = (
        b"From: ann@example.com\r\nSubject: x\r\n"
        b'Content-Type: text/plain; charset="koi8-\x00r"\r\n\r\n' + RUSSIAN.encode("koi8-r")
    )
    assert body_text(Mail(raw).message) == RUSSIAN


def test_part_without_content_type_is_plain_text() -> None:
    raw = (
        b"From: ann@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\n\r\n" + "Текст без заголовків".encode() + b"\r\n--b--\r\n"
    )
    assert body_text(Mail(raw).message) == "Текст без заголовків"


def test_html_meta_charset_is_used_when_mime_has_none() -> None:
    html = '<html><head><meta charset="windows-1251"></head><body><p>Привіт</p></body></html>'
    raw = b"From: ann@example.com\r\nSubject: x\r\nContent-Type: text/html\r\n\r\n" + html.encode(
        "windows-1251"
    )
    assert body_text(Mail(raw).message) == "Привіт"


# -- MIME shapes --------------------------------------------------------------------------


def alternative(plain: str | None, html: str | None) -> EmailMessage:
    message = text_message(plain or "", subtype="plain")
    if plain is None:
        message.set_content(html or "", subtype="html")
    elif html is not None:
        message.add_alternative(html, subtype="html")
    return message


def test_alternative_prefers_plain() -> None:
    message = alternative("Plain version", "<p>HTML version</p>")
    assert body_of(message) == "Plain version"


def test_alternative_falls_back_to_html_when_plain_is_empty() -> None:
    message = alternative("", "<p>Only <b>HTML</b> here</p>")
    assert body_of(message) == "Only HTML here"


def test_alternative_of_html_and_something_else() -> None:
    message = text_message("<p>The HTML</p>", subtype="html")
    message.add_alternative("<bold>enriched</bold>", subtype="enriched")
    assert body_of(message) == "The HTML"


def test_enriched_text_without_its_commands() -> None:
    message = text_message("<bold>Now</bold> <<important>", subtype="enriched")
    assert body_of(message) == "Now <important>"


def test_html_single_part() -> None:
    message = text_message("<p>Line one<br>Line two</p><p>Para</p>", subtype="html")
    assert body_of(message) == "Line one\nLine two\nPara"


def test_mixed_with_attachments_reads_inline_text_only() -> None:
    message = text_message("See the invoice attached.")
    message.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="a.pdf")
    message.add_attachment("a,b\n1,2\n", subtype="csv", filename="data.csv")
    message.add_attachment("notes in a text file", filename="notes.txt")
    assert body_of(message) == "See the invoice attached."


def test_related_reads_root_html() -> None:
    message = text_message("<p>Logo below</p><img src='cid:logo'>", subtype="html")
    message.add_related(b"\x89PNG...", maintype="image", subtype="png", cid="<logo>")
    assert body_of(message) == "Logo below"


def test_alternative_inside_mixed_inside_signed() -> None:
    inner = alternative("Signed plain", "<p>Signed html</p>")
    inner.add_attachment(b"x", maintype="application", subtype="octet-stream", filename="x.bin")
    signed = EmailMessage()
    signed["From"] = "ann@example.com"
    signed["Subject"] = "signed"
    signed.set_type("multipart/signed")
    signed.set_payload([inner])
    signature = EmailMessage()
    signature.set_content(b"sig", maintype="application", subtype="pgp-signature")
    signed.attach(signature)
    assert body_of(signed) == "Signed plain"


def test_forwarded_as_attachment_uses_inner_body_when_outer_is_empty() -> None:
    inner = text_message("Original text of the forwarded mail.", subject="Original")
    outer = EmailMessage()
    outer["From"] = "bob@example.com"
    outer["Subject"] = "Fwd: Original"
    outer.set_content("")
    outer.add_attachment(inner)
    assert body_of(outer) == "Original text of the forwarded mail."


def test_forwarded_as_attachment_keeps_the_note_when_there_is_one() -> None:
    inner = text_message("Inner text.", subject="Original")
    outer = text_message("Please look at this.", subject="Fwd: Original")
    outer.add_attachment(inner)
    assert body_of(outer) == "Please look at this."


def test_format_flowed_is_unwrapped() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: x\r\n"
        b"Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n\r\n"
        b"This is a long line that was wra \r\npped by the client.\r\nSecond line.\r\n"
        b"-- \r\nSignature\r\n"
    )
    assert (
        body_text(Mail(raw).message)
        == "This is a long line that was wrapped by the client.\nSecond line."
    )


def test_plain_text_that_is_really_html_is_converted() -> None:
    message = text_message("<html><body><p>Hi <b>there</b></p></body></html>")
    assert body_of(message) == "Hi there"


def test_link_targets_in_plain_text_are_dropped() -> None:
    message = text_message("Read the news <https://example.com/very/long?x=1> today\nAnd more")
    assert body_of(message) == "Read the news today\nAnd more"


# -- partial fetch ---------------------------------------------------------------------------


def _cut_body(raw: bytes, keep: int) -> bytes:
    head, _, body = raw.partition(b"\n\n")
    return head + b"\n\n" + body[:keep]


@pytest.mark.parametrize("cte", ["base64", "quoted-printable", "8bit"])
@pytest.mark.parametrize("keep", range(1, 60, 3))
def test_partial_bodies_decode_to_clean_prefixes(cte: str, keep: int) -> None:
    raw = text_message("Привіт, світе! Ще трохи тексту тут. " * 3, cte=cte).as_bytes()
    body = body_text(Mail(_cut_body(raw, keep)).message)
    assert "\ufffd" not in body
    assert "=" not in body
    assert ("Привіт, світе! Ще трохи тексту тут. " * 3).startswith(body.rstrip("\n"))


def test_partial_html_drops_the_cut_tag() -> None:
    raw = text_message(
        "<p>Hello <b>world</b> and <a href='https://example.com/x'>more", subtype="html"
    ).as_bytes()
    cut = raw.index(b"<a href") + 12
    assert body_text(Mail(raw[:cut]).message) == "Hello world and"


# -- render --------------------------------------------------------------------------------


def test_render_default_template() -> None:
    sms = render(mail_of(text_message("Server is down.", subject="ALERT")), SmsOptions(), now=NOW)
    assert sms.text == "Ann Smith: ALERT\nServer is down."
    assert (sms.encoding, sms.segments, sms.length) == ("gsm7", 1, len(sms.text))


def test_render_every_field() -> None:
    template = "{from_name}|{from_addr}|{subject}|{date}|{folder}|{rule}|{to}|{body}"
    options = SmsOptions(template=template)
    mail = mail_of(text_message("Body"), folder="INBOX/Work")
    sms = render(mail, options, rule="boss", now=NOW)
    assert (
        sms.text
        == "Ann Smith|ann@example.com|Hello|25.11 14:03|INBOX/Work|boss|me@example.org|Body"
    )


def test_render_date_in_the_readers_zone_with_year_when_not_this_year() -> None:
    options = SmsOptions(template="{date}")
    mail = mail_of(text_message("x"))
    assert render(mail, options, now=datetime(2024, 11, 25, tzinfo=UTC)).text == "25.11 12:03"
    assert render(mail, options, now=datetime(2025, 1, 2, tzinfo=KYIV)).text == "25.11.2024 14:03"


def test_render_survives_a_date_at_the_end_of_time() -> None:
    """Rendering converts the Date to the reader's zone; year 9999 -1400 used to overflow."""
    raw = (
        b"From: a@example.com\r\nSubject: x\r\n"
        b"Date: Fri, 31 Dec 9999 23:59:00 -1400\r\n\r\nbody\r\n"
    )
    sms = render(Mail(raw), SmsOptions(template="{subject}: {body}"), now=NOW)
    assert sms.text == "x: body"


def test_render_falls_back_for_missing_sender_and_subject() -> None:
    raw = b"Content-Type: text/plain\r\n\r\nJust text\r\n"
    sms = render(Mail(raw), SmsOptions(), now=NOW)
    assert sms.text == f"{transform.NO_SENDER}: {transform.NO_SUBJECT}\nJust text"


def test_render_name_falls_back_to_address() -> None:
    message = text_message("x", sender="bob@example.com")
    assert (
        render(mail_of(message), SmsOptions(template="{from_name}"), now=NOW).text
        == "bob@example.com"
    )


def test_render_decodes_encoded_headers() -> None:
    raw = (
        b"From: =?koi8-u?B?7sHUwcym0Q==?= <n@example.com>\r\n"
        b"Subject: =?windows-1251?Q?=D0=E0=F5=F3=ED=EE=EA?= 15\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nok\r\n"
    )
    assert render(Mail(raw), SmsOptions(), now=NOW).text == "Наталія: Рахунок 15\nok"


def test_render_survives_a_body_that_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: object) -> str:
        raise RuntimeError("bug")

    monkeypatch.setattr(transform, "body_text", broken)
    with caplog.at_level(logging.ERROR, logger="forwarder.text.transform"):
        sms = render(
            mail_of(text_message("x", subject="Still sent")), SmsOptions(), rule="r", now=NOW
        )
    assert sms.text == "Ann Smith: Still sent"
    assert "rule r" in caplog.text


def test_render_trims_the_body_first() -> None:
    body = "word " * 200
    sms = render(
        mail_of(text_message(body, subject="Important subject")), SmsOptions(max_length=60), now=NOW
    )
    assert sms.text.startswith("Ann Smith: Important subject\nword")
    assert sms.text.endswith("...")
    assert len(sms.text) <= 60
