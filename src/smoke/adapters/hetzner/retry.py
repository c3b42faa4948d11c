"""Which Hetzner failures are retried, and how long to wait before the next try.

The policy of the official clients (hcloud-python ``_retry_policy``, hcloud-go ``client_handler_retry.go``):

- Retried: the API codes ``rate_limit_exceeded``, ``conflict``, ``bad_gateway`` and ``timeout``; HTTP 502 and 504
  whose body is not an API error; timeouts, connection failures and connections dropped before the answer
  (``httpx.TimeoutException``, ``httpx.NetworkError``, ``httpx.RemoteProtocolError``).
- Never retried: ``locked``, ``uniqueness_error``, every other 4xx (a bare 409 or 429 included, since 409 also
  carries ``uniqueness_error``), 500 and 503.
- Retry ``n`` (0 for the first) waits ``uniform(1, min(backoff_cap, 2**n))`` seconds: 1, then up to 2, 4, 8, 16.

``RateLimit-Reset`` on a 429 is the UNIX time at which the project's whole allowance is back. When that is at most
``backoff_cap`` seconds away the retry waits at least until then, i.e. ``max(backoff, reset - now)``, so it never
lands before the reset. When it is further away the plain backoff applies: the allowance refills by one request per
second, so a retry a few seconds later usually gets through, and waiting up to an hour for a full bucket would
stall the job.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import msgspec

from smoke.adapters.hetzner.wire import ErrorEnvelope
from smoke.domain.errors import CloudError, CloudServerNameTaken, CloudTransientError

__all__ = ("Failure", "RetryPolicy", "response_failure", "transport_failure")

PROVIDER = "Hetzner"
REFUSED_TOKEN_CODES = frozenset({"unauthorized", "token_readonly", "forbidden"})
RETRYABLE_CODES = frozenset({"rate_limit_exceeded", "conflict", "bad_gateway", "timeout"})
RETRYABLE_BARE_STATUSES = frozenset({502, 504})
RETRYABLE_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one attempt failed, in plain strings (never the driver's exception, which holds the request headers).

    Attributes:
        code: the API error code; the HTTP status for a body that is not an API error; ``network_error`` when no
            answer came.
        message: what went wrong, for humans.
        retryable: whether the policy allows another try.
        rate_limit_reset: ``RateLimit-Reset`` of a 429, as UNIX seconds.
    """

    code: str
    message: str
    retryable: bool
    rate_limit_reset: float | None = None

    def error(self, attempts: int) -> CloudError:
        """The domain error for giving up after ``attempts`` tries, the last of which failed like this."""
        if self.retryable:
            message = f"{self.message}; gave up after {attempts} attempts"
            return CloudTransientError(self.code, message, provider=PROVIDER)
        if self.code == "uniqueness_error":
            return CloudServerNameTaken(self.code, self.message, provider=PROVIDER)
        if self.code in REFUSED_TOKEN_CODES:
            return CloudError(self.code, f"{self.message}: the API token was refused", provider=PROVIDER)
        return CloudError(self.code, self.message, provider=PROVIDER)


def response_failure(response: httpx.Response) -> Failure:
    """The failure an error answer (status >= 300) stands for."""
    try:
        envelope = msgspec.json.decode(response.content, type=ErrorEnvelope)
    except msgspec.DecodeError:
        status = response.status_code
        reason = response.reason_phrase or "error"
        return Failure(str(status), f"HTTP {status} {reason}", status in RETRYABLE_BARE_STATUSES)
    code, message = envelope.error.code, envelope.error.message or envelope.error.code
    reset = _reset_header(response) if code == "rate_limit_exceeded" else None
    return Failure(code, message, code in RETRYABLE_CODES, reset)


def transport_failure(exc: httpx.HTTPError) -> Failure:
    """The failure of a request that got no (complete) answer."""
    detail = str(exc)
    message = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return Failure("network_error", message, isinstance(exc, RETRYABLE_TRANSPORT_ERRORS))


def _reset_header(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["RateLimit-Reset"])
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many retries and how long between them (see the module docstring).

    Attributes:
        max_retries: retries after the first attempt; ``max_retries + 1`` attempts in all.
        backoff_cap: the longest wait between two attempts, in seconds (at least 1).
        rng: source of the jitter.
        clock: UNIX time in seconds, to read ``RateLimit-Reset`` against.
    """

    max_retries: int
    backoff_cap: float
    rng: random.Random
    clock: Callable[[], float]

    def wait(self, retry: int, failure: Failure) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first) after ``failure``."""
        backoff = self.rng.uniform(1.0, min(self.backoff_cap, 2.0**retry))
        if failure.rate_limit_reset is None:
            return backoff
        until_reset = failure.rate_limit_reset - self.clock()
        return max(backoff, until_reset) if until_reset <= self.backoff_cap else backoff
