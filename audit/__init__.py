"""audit package of loyalfed (see DESIGN.md)."""
