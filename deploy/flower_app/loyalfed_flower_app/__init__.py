"""Entry points of the loyalfed Flower App (see pyproject.toml)."""
