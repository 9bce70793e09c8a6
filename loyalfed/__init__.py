"""loyalfed: the CLI, settings and end-to-end demo that wire the other packages together."""

__version__ = "0.1.0"
