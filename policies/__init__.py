"""policies package of loyalfed (see DESIGN.md)."""
