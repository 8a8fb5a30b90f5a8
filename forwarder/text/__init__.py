"""Text: from a mail's bytes to the words of its SMS (pure: values in, values out).

Holds MIME and charset decoding (``mime``), HTML to text (``htmltext``), quote and
signature stripping (``quotes``), the SMS text itself — templates, GSM-7/UCS-2 segments,
trimming (``smstext``) — transliteration (``translit``), and ``transform``, which puts
them together for one ``Mail``.

May import: the standard library (never sockets, SQLite or logging configuration),
charset-normalizer, and ``forwarder.mail``. Nothing else of forwarder.
"""
