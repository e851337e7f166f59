"""The default cell scheduler: every queued cell leaves at once.

Pure code (no reactor): the link it drives does the writing. The mixing
schedulers (:mod:`aegis_hidden.mixing`) implement the same
:class:`~aegis_hidden.interfaces.ICellScheduler` on an injected clock.
"""

from __future__ import annotations

from zope.interface import implementer

from ..interfaces import ICellLink, ICellScheduler

__all__ = ["ImmediateScheduler"]


@implementer(ICellScheduler)
class ImmediateScheduler:
    """Seals and writes a link's cells as soon as they are queued, no cover.

    ``batch_size`` (``performance.message_batch_size``) is how many cells go in
    one transport write; a long message takes several writes in a row. Today's
    behaviour, and no protection against traffic analysis beyond fixed-size cells.
    """

    def __init__(self, batch_size: int = 10) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size

    def register(self, link: ICellLink) -> None:
        self.notify(link)

    def unregister(self, link: ICellLink) -> None:
        pass

    def notify(self, link: ICellLink) -> None:
        # Always progresses: a REKEY takes at most one slot of a call, and the
        # next call starts under the fresh key (SessionParams.rekey_cells >= 1).
        while not link.closed and link.queued():
            link.emit(self.batch_size)
