"""The one small interface every platform adapter implements.

The outbox hands an adapter one ``Delivery`` at a time (from a worker
thread; an adapter may be called from several threads at once, up to the
target's concurrency limit) and reads the outcome:

- ``deliver`` returns a receipt dict (the platform's id for the item,
  anything worth showing an operator) when the platform has the image;
- ``RetryableError`` when trying again later may succeed (connection refused,
  timeout, 5xx, 429/503; ``retry_after`` carries a Retry-After in seconds);
- ``PermanentError`` when it will not (bad credentials after a renewal,
  4xx that a retry cannot fix, ``success: false`` with a real error); the
  outbox dead-letters the entry with the message;
- ``AwaitingConfirmation`` when the platform has the image but confirms it
  later, elsewhere (DICOM storage commitment): the entry waits in the
  outbox's ``committing`` state for ``seconds``; whoever receives the
  confirmation settles it (`Outbox.settle`), and if none comes in time the
  entry is handed to the adapter again with ``expired`` set.

An adapter that sends several images better together (one DICOM
association) sets ``batch_size`` and overrides ``deliver_batch``: it gets up
to that many items of one target and returns one outcome per item, in
order (a receipt dict or one of the exceptions above, returned, not raised).

A delivery must be idempotent where the platform lets us tell: after a lost
response the outbox retries, and the retry must find the image already
there and return a receipt instead of storing a second copy.

A delivery of several steps records each step's result with
``item.record(step, value)`` (durable in the outbox entry on return) before
it takes the next; a retry, or the first attempt after a restart, sees them
in ``item.progress`` and resumes from what is known instead of guessing.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    import requests

# requests (~5 MB) is imported where an adapter first needs it, not with this
# module: every start imports it for `Delivery`, most configure no HTTP target.


class RetryableError(Exception):
    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    pass


class AwaitingConfirmation(Exception):
    """The platform has the image; its confirmation comes later, within ``seconds``."""

    def __init__(self, message: str, *, seconds: float):
        super().__init__(message)
        self.seconds = seconds


@dataclass(frozen=True)
class Delivery:
    """One image for one target, as the outbox stored it."""
    entry_id: int
    target: str
    image_id: str              # stable: the same on every attempt (names, UIDs derive from it)
    png_path: Path             # the 16-bit grayscale PNG, owned by the outbox
    image_info: dict           # the Modality ImageInfo: width, height, pixelSizeX/Y,
                               # pixelHash {alg, hash}, sensorInfo, deviceInfo,
                               # acquisitionInfo (with its context), lutInfo, exposureInfo
    context: dict = field(default_factory=dict)
                               # session context merged with the exposure's: patientId,
                               # patientName, birthDate, sex, studyDate (YYYY-MM-DD),
                               # studyDescription, laterality (L/R), tooth, region ...
    attempt: int = 1
    progress: Mapping[str, Any] = field(default_factory=dict)
                               # the steps recorded by earlier attempts (read-only; see record)
    recorder: Callable[[str, Any], None] | None = field(default=None, repr=False, compare=False)
                               # the outbox's durable record_step for this entry
    deidentified: str | None = None
                               # None, or (the target's `deidentify` on: context and image_info
                               # are a de-identified copy) how its dates were treated: "keep",
                               # "shift" or "remove"; see forward.deidentify
    expired: bool = False       # the previous attempt ended AwaitingConfirmation and no
                                # confirmation came in time: start over (send it again)

    def __post_init__(self) -> None:
        steps = dict(self.progress)
        object.__setattr__(self, "_steps", steps)
        object.__setattr__(self, "progress", MappingProxyType(steps))

    def record(self, step: str, value: Any) -> None:
        """Keep a step's result (JSON-able; None forgets it) before taking the next step.

        Durable when this returns (the outbox commits it with fsync), so a retry
        or a restart resumes from it; ``progress`` shows it at once.
        """
        if self.recorder is not None:
            self.recorder(step, value)
        steps: dict = getattr(self, "_steps")
        if value is None:
            steps.pop(step, None)
        else:
            steps[step] = value

    @property
    def filename(self) -> str:
        return f"{self.image_id}.png"


def check_response(response: requests.Response, what: str) -> None:
    """Raise the outbox's error for an unsuccessful HTTP answer (shared by adapters)."""
    status = response.status_code
    if status < 400:
        return
    detail = response.text[:300].strip()
    if status in (429, 503) or status >= 500 or status == 408:
        retry_after = None
        header = response.headers.get("Retry-After")
        if header:
            try:
                retry_after = max(0.0, float(header))
            except ValueError:
                import time
                from email.utils import parsedate_to_datetime
                try:
                    retry_after = max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
                except (TypeError, ValueError):
                    retry_after = None
        raise RetryableError(f"{what}: HTTP {status} {detail}", retry_after=retry_after)
    raise PermanentError(f"{what}: HTTP {status} {detail}")


def transport(call, what: str):
    """Run a requests call; connection errors and timeouts are retryable."""
    import requests
    try:
        return call()
    except (requests.ConnectionError, requests.Timeout) as err:
        raise RetryableError(f"{what}: {type(err).__name__}: {err}") from None


class Adapter(abc.ABC):
    kind: str = ""
    batch_size: int = 1         # items handed to one deliver_batch call at most

    def __init__(self, *, name: str, options: dict, http: requests.Session | None = None):
        self.name = name
        self.options = dict(options)
        if http is None:
            import requests
            http = requests.Session()
        self.http = http

    @abc.abstractmethod
    def deliver(self, item: Delivery) -> dict:
        """Put ``item`` on the platform; see the module docstring for the outcome."""

    def deliver_batch(self, items: list[Delivery]) -> list[dict | Exception]:
        """One outcome per item, in order: a receipt, or the exception (returned, not raised)."""
        outcomes: list[dict | Exception] = []
        for item in items:
            try:
                outcomes.append(self.deliver(item))
            except Exception as err:
                outcomes.append(err)
        return outcomes

    def close(self) -> None:
        self.http.close()
