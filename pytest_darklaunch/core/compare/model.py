"""What the comparison works on: settings, one captured upstream answer, one request.

These are plain frozen values so that the backend that captures answers (the local backend's
Envoy log), the comparer (pure) and the pytest layer (users' hooks) share one vocabulary.

>>> s = Settings(responses="body", ignore=("$.ts", "header:Date"))
>>> s.ignored_headers >= {"date"}, s.ignored_paths
(True, ('$.ts',))
"""

from __future__ import annotations

from dataclasses import dataclass, field

HIDDEN = "***"  # what a secret shows as
# The digest of a body that was not read (a stream, or too large to buffer): such bodies
# compare by their announced length only.
UNCAPTURED = "not captured"
DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_EXAMPLES = 5
# Diffy's cut-offs: a field's live-vs-dark differences count only when they exceed its
# live-vs-live differences by both margins.
DEFAULT_RELATIVE_THRESHOLD = 0.20
DEFAULT_ABSOLUTE_THRESHOLD = 0.0003

# Never shown, whatever the user lists.
ALWAYS_REDACTED = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# Redacted by default too; names under ``redact:`` add to these, never replace them.
DEFAULT_REDACT = (
    "password", "passwd", "secret", "token", "access_token", "refresh_token", "id_token",
    "api_key", "apikey", "x-api-key", "client_secret", "private_key", "session", "sessionid",
    "x-auth-token", "x-csrf-token",
)
# Headers that differ between any two servers or hops and say nothing about the answer:
# the body is compared itself (content-length), the proxy sets server, the clock sets date.
UNCOMPARED_HEADERS = frozenset({
    "date", "server", "content-length", "connection", "keep-alive", "transfer-encoding",
    "x-envoy-upstream-service-time",
})


LIVE2 = "live-2"  # live's command on a port of its own, receiving what dark receives

@dataclass(frozen=True)
class Settings:
    """The ``compare:`` section, resolved.

    ``responses``: ``status`` (status codes only) or ``body`` (status, headers and body).
    ``body``: ``json`` (field by field), ``text`` (exact string) or ``bytes`` (exact bytes).
    ``ignore``: JSON paths (``$.ts``, ``$.items[*].id``) and ``header:NAME`` never compared.
    ``baseline``: what dark's latency is paired with: ``live-2`` (live's command receiving
    the same mirrored requests as dark), ``live`` (live itself), or ``""`` (decided by the
    spec: ``live-2`` when it holds a ``max_increase`` on a latency metric).
    """

    responses: str = "status"
    body: str = "json"
    ignore: tuple[str, ...] = ()
    noise: bool = False
    max_body: int = DEFAULT_MAX_BODY
    examples: int = DEFAULT_EXAMPLES
    redact: tuple[str, ...] = ()
    relative_threshold: float = DEFAULT_RELATIVE_THRESHOLD
    absolute_threshold: float = DEFAULT_ABSOLUTE_THRESHOLD
    baseline: str = ""

    @property
    def live2(self) -> bool:
        """Whether live-2 runs: to learn noise, or as the latency baseline."""
        return self.noise or self.baseline == LIVE2

    @property
    def ignored_headers(self) -> frozenset[str]:
        named = {i.split(":", 1)[1].strip().lower() for i in self.ignore if i.startswith("header:")}
        return UNCOMPARED_HEADERS | named

    @property
    def ignored_paths(self) -> tuple[str, ...]:
        return tuple(i for i in self.ignore if not i.startswith("header:"))

    @property
    def redacted(self) -> frozenset[str]:
        return ALWAYS_REDACTED | {n.lower() for n in (*DEFAULT_REDACT, *self.redact)}


@dataclass(frozen=True)
class Request:
    """The request both versions answered (what users' hooks and examples see)."""

    request_id: str
    method: str
    path: str
    authority: str = ""


@dataclass(frozen=True)
class Response:
    """One version's captured answer to a request.

    ``body`` holds the whole body when it was at most ``max_body`` bytes (``complete``), else
    its first bytes, with ``digest`` a hash of the whole and ``length`` its size.
    """

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    length: int = 0
    digest: str = ""
    complete: bool = True
    duration_us: int | None = None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


@dataclass(frozen=True)
class Difference:
    """One field that differs in a pair: its path (``$.total``, ``status``, ``header:etag``),
    its class (array indices as ``[*]``, what noise is learned on) and both values."""

    path: str
    field: str
    live: str
    dark: str


@dataclass
class Pair:
    """Live's and dark's answers to one request, and live-2's when noise is learned."""

    request: Request
    live: Response
    dark: Response
    live2: Response | None = None
    differences: list[Difference] = field(default_factory=list)
