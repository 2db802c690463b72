"""One budget for the memory that decoding and filtering images holds at once.

Decoding a PNG and enhancing it hold many times the image's size for a
moment: 19 bytes a pixel for an enhancement (`filters.footprint`), 78 MiB
for a 2400x1708 radiograph, 1220 MiB at the 8192x8192 size limit. Without
a bound, eight such requests at once took 7.9 GB. So each piece of work
reserves its estimate here before it allocates, and gives it back when done:

- a request (upload decode, filter call) waits up to ``wait_seconds`` for
  room, then gets 503 with Retry-After: the work is fine, only the moment
  is busy;
- work that could never fit, larger than the whole budget, gets 413 at
  once: waiting or retrying cannot help, a smaller image or a larger
  ``images.pixel_budget_mb`` can;
- a filtered forward, background work, waits longer and is otherwise
  retried by the outbox (`forward.delivery.filtered_image`);
- an exposure is admitted at once, counted, even beyond the budget
  (`admit`): a dose was given, so its image is never refused or held back;
  its frame is in memory already when the pipeline starts, so waiting would
  free nothing; and at most one exposure per device is in flight, so the
  overshoot is bounded. Requests then find that much less room.

Decoded pixels kept for later are the pixel cache's business
(``store.pixel_cache_mb``); this budget covers work in progress.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import numpy as np

from sensord.daemon.errors import ServiceError
from sensord.filters import footprint, png
from sensord.filters.png_scanlines import Scanlines

log = logging.getLogger("sensord.budget")

MiB = 1 << 20


class BudgetBusy(ServiceError):
    """The budget stayed full for as long as the work may wait: try again shortly."""
    status = 503
    headers = {"Retry-After": "1"}


class BeyondBudget(ServiceError):
    """The work alone needs more than the whole budget: no wait can make room."""
    status = 413


class PixelBudget:
    def __init__(self, max_bytes: int, *, wait_seconds: float = 2.0):
        self.max_bytes = max_bytes
        self.wait_seconds = wait_seconds
        self._reserved = 0
        self._peak = 0
        self._room = threading.Condition()
        # Reservations that had to wait for room, and those refused (BudgetBusy) after
        # waiting: counters for the daemon's metrics.
        self.waits = 0
        self.refusals = 0
        # Bytes given back so far, for the heap trimmer (daemon/malloc.py).
        self.released_bytes = 0

    @property
    def reserved_bytes(self) -> int:
        """Bytes held now by work in progress (exposures may take it past ``max_bytes``)."""
        return self._reserved

    @property
    def peak_bytes(self) -> int:
        """The most ever held at once."""
        return self._peak

    def warn_unless_fits(self, max_width: int, max_height: int) -> None:
        """Log, at start, when a filter call on the largest image accepted cannot fit:
        such calls will get 413 (an operator's choice, or a mistake worth seeing)."""
        worst = max(footprint.filter_call_bytes(name, max_width, max_height)
                    for name in footprint.FILTER_PER_PIXEL)
        if worst > self.max_bytes:
            log.warning("images.pixel_budget_mb = %d: a filter on a %dx%d image (images.max_width, "
                        "max_height) needs %d MiB, so such calls will be refused (413)",
                        _mib(self.max_bytes), max_width, max_height, _mib(worst))

    @contextlib.contextmanager
    def reserve(self, nbytes: int, *, what: str, wait: float | None = None) -> Iterator[None]:
        """Hold ``nbytes`` for the body of the ``with``.

        Waits up to ``wait`` seconds (default ``wait_seconds``) for room.
        Raises BeyondBudget (413) if ``nbytes`` exceeds the whole budget and
        BudgetBusy (503, Retry-After) if no room came in time; ``what``
        names the work in their message.
        """
        if nbytes > self.max_bytes:
            raise BeyondBudget(
                f"{what} needs {_mib(nbytes)} MiB of working memory, more than the whole pixel "
                f"budget of {_mib(self.max_bytes)} MiB (images.pixel_budget_mb): use a smaller image, "
                "or ask the operator to raise the budget")
        deadline = time.monotonic() + (self.wait_seconds if wait is None else wait)
        with self._room:
            if self._reserved + nbytes > self.max_bytes:
                self.waits += 1
            while self._reserved + nbytes > self.max_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.refusals += 1
                    log.info("pixel budget busy: %s needs %d MiB, %d of %d MiB held", what,
                             _mib(nbytes), _mib(self._reserved), _mib(self.max_bytes))
                    raise BudgetBusy(
                        f"busy: {what} needs {_mib(nbytes)} MiB of working memory and the pixel "
                        f"budget ({_mib(self.max_bytes)} MiB) is held by work in progress; "
                        "try again in a moment")
                self._room.wait(left)
            self._take(nbytes)
        try:
            yield
        finally:
            self._give(nbytes)

    @contextlib.contextmanager
    def admit(self, nbytes: int, *, what: str) -> Iterator[None]:
        """Hold ``nbytes`` at once, even beyond the budget (exposures; see the module)."""
        with self._room:
            if self._reserved + nbytes > self.max_bytes:
                log.info("pixel budget: %s admitted beyond the budget (%d + %d of %d MiB)", what,
                         _mib(self._reserved), _mib(nbytes), _mib(self.max_bytes))
            self._take(nbytes)
        try:
            yield
        finally:
            self._give(nbytes)

    def _take(self, nbytes: int) -> None:
        self._reserved += nbytes
        self._peak = max(self._peak, self._reserved)

    def _give(self, nbytes: int) -> None:
        with self._room:
            self._reserved -= nbytes
            self.released_bytes += nbytes
            self._room.notify_all()


def decode_png(budget: PixelBudget | None, data: bytes | memoryview, *, max_width: int, max_height: int,
               wait: float | None = None) -> np.ndarray:
    """`png.decode_gray16` with its peak reserved from ``budget`` (None: no budget)."""
    return prove_png(budget, data, max_width=max_width, max_height=max_height, wait=wait).pixels()


def prove_png(budget: PixelBudget | None, data: bytes | memoryview, *, max_width: int, max_height: int,
              wait: float | None = None) -> Scanlines:
    """`png.prove_gray16` with its peak reserved from ``budget`` (None: no budget).

    The header is read first (33 bytes, no allocation); a file the decode
    refuses anyway (not a PNG, not 16-bit gray, beyond the size bounds)
    reserves nothing, so it gets that error, not a budget one. What the
    proof leaves to do (`Scanlines.pixels`) works in place: no more memory.
    """
    if budget is None:
        return png.prove_gray16(data, max_width=max_width, max_height=max_height)
    try:
        header: png.PngHeader | None = png.read_header(data)
    except png.PngError:
        header = None
    if header is None or not (header.bit_depth == 16 and header.color_type == 0
                              and header.width <= max_width and header.height <= max_height):
        return png.prove_gray16(data, max_width=max_width, max_height=max_height)
    with budget.reserve(footprint.decode_bytes(header.width, header.height),
                        what=f"decoding a {header.width}x{header.height} PNG", wait=wait):
        return png.prove_gray16(data, max_width=max_width, max_height=max_height)


def _mib(nbytes: int) -> int:
    return -(-nbytes // MiB)
