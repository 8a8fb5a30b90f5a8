"""The config file's reading layer: YAML that remembers FILE:LINE, and typed sections.

Holds ``yamlsource``, which loads YAML with every node stamped with its file and line; ``schema``
reads typed values out of it and collects every problem. What the settings *mean* is
in ``forwarder.config``.

May import: PyYAML and the standard library only: every other layer may import it.
"""

#: ``log_format:`` values; here, not in ``forwarder.config``, so that ``forwarder --help`` can
#: list them without importing the whole config reader.
LOG_FORMATS = ("plain", "json")
