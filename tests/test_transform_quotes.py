"""Quoted replies, signatures and disclaimers are cut, in English, Russian and Ukrainian."""

from __future__ import annotations

import pytest

from forwarder.text.quotes import clean, is_forward_block

CASES = {
    # -- quoted replies -------------------------------------------------------------
    "gmail on-wrote": (
        "Yes, tomorrow works.\n\n"
        "On Mon, Nov 25, 2024 at 2:03 PM Ann Smith <ann@example.com> wrote:\n"
        "> Can we meet?\n",
        "Yes, tomorrow works.",
    ),
    "gmail on-wrote wrapped over two lines": (
        "Sure.\n\nOn Mon, Nov 25, 2024 at 2:03 PM Ann Smith <\nann@example.com> wrote:\n\n> Hi\n",
        "Sure.",
    ),
    "outlook original message": (
        "Approved.\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\nTo: Ann\n"
        "Subject: Budget\n\nPlease approve.\n",
        "Approved.",
    ),
    "outlook header block with rule": (
        "Done.\n\n________________________________\nFrom: Bob Jones <bob@example.com>\n"
        "Sent: Monday, November 25, 2024 2:03 PM\nTo: Ann <ann@example.com>\n"
        "Subject: Task\n\nDo it.\n",
        "Done.",
    ),
    "outlook bold markers": (
        "Ok\n\n*From:* Bob\n*Sent:* Monday\n*To:* Ann\n*Subject:* x\n\nold\n",
        "Ok",
    ),
    "interleaved reply keeps the answers": (
        "> Will you come?\nYes.\n> At ten?\nAt eleven.\n",
        "Yes.\nAt eleven.",
    ),
    "thunderbird german": (
        "Ja.\n\nAm 25.11.2024 um 14:03 schrieb Ann Smith:\n> Kommst du?\n",
        "Ja.",
    ),
    "russian gmail": (
        "Да, согласен.\n\nпн, 25 нояб. 2024 г. в 14:03, Иван Петров <ivan@example.ru>:\n"
        "\n25 нояб. 2024 г., в 14:03, Иван Петров <ivan@example.ru> написал(а):\n> Встречаемся?\n",
        "Да, согласен.",
    ),
    "russian mail.ru": (
        "Спасибо!\n\nПонедельник, 25 ноября 2024, 14:03 +03:00 от Иван <ivan@mail.ru>:\n"
        "Иван пишет:\n> текст\n",
        "Спасибо!",
    ),
    "russian yandex": (
        'Получил.\n\n25.11.2024, 14:03, "Иван" <ivan@yandex.ru>:\n> Отправил документы\n',
        "Получил.",
    ),
    "russian writes": (
        "Хорошо.\n\nИван Петров писал(а):\n> вопрос\n",
        "Хорошо.",
    ),
    "russian outlook": (
        "Принято.\n\nОт: Иван Петров\nОтправлено: 25 ноября 2024 г. 14:03\nКому: Анна\n"
        "Тема: Отчёт\n\nстарое\n",
        "Принято.",
    ),
    "russian original message": (
        "Ок.\n\n-----Исходное сообщение-----\nОт: Иван\nДата: вчера\nКому: Анна\n\nстарое\n",
        "Ок.",
    ),
    "ukrainian gmail": (
        "Так, буду.\n\n"
        "пн, 25 лист. 2024 р. о 14:03 Петро Іваненко <petro@example.ua> пише:\n> Прийдеш?\n",
        "Так, буду.",
    ),
    "ukrainian wrote": (
        "Дякую.\n\n25.11.2024 14:03, Олена написав(ла):\n> файл\n",
        "Дякую.",
    ),
    "ukrainian outlook": (
        "Погоджено.\n\nВід: Петро Іваненко\nНадіслано: 25 листопада 2024 р. 14:03\nКому: Олена\n"
        "Тема: Звіт\n\nстаре\n",
        "Погоджено.",
    ),
    # -- signatures and mobile footers ----------------------------------------------------------
    "rfc 3676 signature": ("See you.\n-- \nAnn Smith\nACME Corp\n", "See you."),
    "bare dashes near the end": ("See you.\n--\nAnn\n", "See you."),
    "sent from my iphone": ("On my way.\n\nSent from my iPhone\n", "On my way."),
    "get outlook": ("Fine.\n\nGet Outlook for Android\n", "Fine."),
    "russian iphone": ("Еду.\n\nОтправлено с iPhone\n", "Еду."),
    "ukrainian mobile": ("Їду.\n\nНадіслано з мого iPhone\n", "Їду."),
    "signature then quote": (
        "Answer.\n-- \nAnn\n\nOn Mon, Nov 25, 2024 at 2:03 PM Bob <bob@example.com> wrote:\n> Q\n",
        "Answer.",
    ),
    # -- disclaimers -------------------------------------------------------------------------------
    "english disclaimer": (
        "Invoice attached.\n\nThis e-mail and any attachments are confidential and intended solely "
        "for the addressee. If you are not the intended recipient, delete it.\n",
        "Invoice attached.",
    ),
    "russian disclaimer": (
        "Счёт во вложении.\n\nДанное сообщение и любые вложения являются конфиденциальными. "
        "Если вы получили его по ошибке, удалите его.\n",
        "Счёт во вложении.",
    ),
    "ukrainian disclaimer": (
        "Рахунок у вкладенні.\n\nЦей лист та будь-які вкладення є конфіденційними. "
        "Якщо ви отримали його помилково, видаліть його.\n",
        "Рахунок у вкладенні.",
    ),
    "disclaimer then signature": (
        "Text.\n--\nAnn\nPhone 1\nPhone 2\n\nCONFIDENTIALITY NOTICE: this message is private.\n"
        "More legal text here.\n",
        "Text.",
    ),
    "rule line above footer": (
        "Test test.\n\n----------------------------------\n"
        "Sent via Bell Mobility's Text Messaging service.\n"
        "----------------------------------\n",
        "Test test.",
    ),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_clean(text: str, expected: str) -> None:
    assert clean(text) == expected


FORWARDS = {
    "gmail forward": (
        "FYI\n\n---------- Forwarded message ---------\nFrom: Bob <bob@example.com>\n"
        "Date: Mon, Nov 25, 2024\nSubject: Outage\nTo: Ann\n\nThe server is down.\n",
        "FYI\n\n---------- Forwarded message ---------\nFrom: Bob <bob@example.com>\n"
        "Date: Mon, Nov 25, 2024\nSubject: Outage\nTo: Ann\n\nThe server is down.",
    ),
    "apple forward": (
        "Begin forwarded message:\n\nFrom: Bob\nSubject: Outage\nDate: today\nTo: Ann\n\nDown.\n",
        "Begin forwarded message:\n\nFrom: Bob\nSubject: Outage\nDate: today\nTo: Ann\n\nDown.",
    ),
    "russian forward": (
        "-------- Пересылаемое сообщение --------\nОт: Иван\nДата: вчера\nКому: Анна\n"
        "Тема: Авария\n\nСервер упал.\n",
        "-------- Пересылаемое сообщение --------\nОт: Иван\nДата: вчера\nКому: Анна\n"
        "Тема: Авария\n\nСервер упал.",
    ),
    "ukrainian forward": (
        "-------- Переслане повідомлення --------\nВід: Петро\nДата: вчора\nКому: Олена\n"
        "Тема: Аварія\n\nСервер впав.\n",
        "-------- Переслане повідомлення --------\nВід: Петро\nДата: вчора\nКому: Олена\n"
        "Тема: Аварія\n\nСервер впав.",
    ),
    "note signature stays out, forwarded text stays in": (
        "See below.\n-- \nAnn\n---------- Forwarded message ---------\nFrom: Bob\n\nBody.\n",
        "See below.\n---------- Forwarded message ---------\nFrom: Bob\n\nBody.",
    ),
    "history inside the forward is cut": (
        "---------- Forwarded message ---------\nFrom: Bob\n\nNew text.\n\n"
        "On Sun, Nov 24, 2024 at 9:00 AM Carl <carl@example.com> wrote:\n> old\n",
        "---------- Forwarded message ---------\nFrom: Bob\n\nNew text.",
    ),
}


@pytest.mark.parametrize(("text", "expected"), FORWARDS.values(), ids=FORWARDS.keys())
def test_forwarded_content_is_kept(text: str, expected: str) -> None:
    assert clean(text) == expected


def test_outlook_forward_keeps_the_first_header_block_when_subject_says_forward() -> None:
    text = (
        "Please handle.\n\n________________________________\nFrom: Bob\nSent: Monday\nTo: Ann\n"
        "Subject: Outage\n\nThe server is down.\n"
    )
    assert clean(text) == "Please handle."
    assert clean(text, forwarded=True) == text.strip()


@pytest.mark.parametrize(
    "text",
    [
        "> everything is quoted\n> nothing else\n",
        "-- \nonly a signature\n",
        "On Mon, Nov 25, 2024 at 2:03 PM Ann <ann@example.com> wrote:\n> hi\n",
    ],
)
def test_cleaning_that_would_leave_nothing_keeps_the_text(text: str) -> None:
    assert clean(text) == text.strip()


def test_footer_words_in_the_middle_of_a_long_text_are_content() -> None:
    text = "Parcel status:\nSent via DHL Express\n" + "\n".join(f"step {n}" for n in range(20))
    assert clean(text) == text


def test_lines_that_only_mention_quotes_are_kept() -> None:
    text = "The sender wrote: please call.\nFrom: my phone\nI'm not in the office."
    assert clean(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("---------- Forwarded message ---------\nFrom: x", True),
        ("\n  Begin forwarded message:\n", True),
        ("-------- Пересылаемое сообщение --------", True),
        ("On Mon wrote:\n> x", False),
    ],
)
def test_is_forward_block(text: str, expected: bool) -> None:
    assert is_forward_block(text) is expected
