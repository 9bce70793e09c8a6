"""coordinator package of loyalfed (see DESIGN.md)."""
