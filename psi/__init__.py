"""Private set intersection for member matching: semi-honest ECDH-PSI over ristretto255 or X25519.

Public face: prepare identifiers (``prepare_identifiers``), run both parties locally
(``run_local``) or drive them over a transport (``Initiator``/``Responder`` with ``Frame`` and
``SessionParams``), in intersection, cardinality or intersection-sum mode (``PsiMode``). A large
party matching many small ones encrypts its set once per epoch (``CachedSetHolder``/``Matcher``).
"""

from psi.cached_set import CachedSetHolder, CachedSetMatcher
from psi.errors import InvalidElementError, PsiError, PsiProtocolError
from psi.group_engine import GroupEngine
from psi.identifiers import IdentifierKind, PreparedSet, prepare_identifiers
from psi.local_run import LocalRun, WireStats, run_local
from psi.protocol import Initiator, PsiResult, Responder
from psi.wire import DEFAULT_GROUP, Frame, MessageKind, PsiGroup, PsiMode, Reveal, SessionParams

__all__ = [
    "DEFAULT_GROUP",
    "CachedSetHolder",
    "CachedSetMatcher",
    "Frame",
    "GroupEngine",
    "IdentifierKind",
    "Initiator",
    "InvalidElementError",
    "LocalRun",
    "MessageKind",
    "PreparedSet",
    "PsiError",
    "PsiGroup",
    "PsiMode",
    "PsiProtocolError",
    "PsiResult",
    "Responder",
    "Reveal",
    "SessionParams",
    "WireStats",
    "prepare_identifiers",
    "run_local",
]
