"""Text: from a mail's bytes to the words of its SMS (pure: values in, values out).

Holds MIME and charset decoding (``mime``), HTML to text (``htmltext``), quote and
signature stripping (``quotes``), the SMS text itself — templates, GSM-7/UCS-2 segments,
trimming (``smstext``) — transliteration (``translit``), and ``transform``, which puts
them together for one mail (``forwarder.mail.Mail`` builds on this package, never the
other way round: ``transform`` describes the mail it reads as a protocol).

May import: the standard library (never sockets, SQLite or logging configuration) and
charset-normalizer. Nothing of forwarder outside this package.
"""
