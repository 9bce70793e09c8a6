"""A partner's data plane: readers and validation for the data contract of DESIGN.md."""
