"""psi package of loyalfed (see DESIGN.md)."""
