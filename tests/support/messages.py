"""A Progress that keeps every message, for tests that check what a build said it did."""

from __future__ import annotations

from lithotse_desktop.progress import Progress


class Messages(Progress):
    """A Progress that keeps every message."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def update(self, message: str | None = None, **kwargs) -> None:
        if message is not None:
            self.seen.append(message)
        super().update(message, **kwargs)

    def said(self, text: str) -> list[str]:
        return [m for m in self.seen if text in m]
