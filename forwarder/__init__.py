"""forwarder: important IMAP mail to SMS through the AlphaSMS Email2SMS gateway."""

__version__ = "0.1.0"
