"""models package of loyalfed (see DESIGN.md)."""
