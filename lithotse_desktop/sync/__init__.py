"""Sharing a workspace through a remote store: ``push``, ``pull`` and ``status``.

See :mod:`lithotse_desktop.sync.engine` for the rules (what is copied, in which order, and how
pointers are published without overwriting anyone).
"""

from .engine import SyncResult, SyncStatus, is_mutable, open_remote, pull, push, status

__all__ = ["SyncResult", "SyncStatus", "is_mutable", "open_remote", "pull", "push", "status"]
