"""participant_node package of loyalfed (see DESIGN.md)."""
