"""Where a federation's audit log lives and which key signs it: the ``[audit]`` table of
``federation.toml``, parsed once at the edge.

```toml
[audit]
public_key = "3b6a27bc…"                  # the log's Ed25519 key (hex): what verification trusts
url = "https://audit.example.org:8470"    # optional: the audit service; without it, a local log
log = ".loyalfed/audit.sqlite"            # optional: the local log, relative to the federation folder
```

The public key is distributed with the federation's configuration, out of band from the log, so
that a log rewritten together with its key does not verify (RFC 9162 §8.3: trust is pinned).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

__all__ = ["AuditSettings"]


class AuditSettings(BaseModel):
    """The ``[audit]`` table of ``federation.toml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    public_key: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None
    url: Annotated[str, StringConstraints(pattern=r"^https://[^\s]+$")] | None = None
    log: Path | None = None
