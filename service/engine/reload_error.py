"""Why a hot reload was refused, as the HTTP answer it gets (torch-free: front ends raise it too)."""

from __future__ import annotations


class ReloadError(Exception):
    """The new checkpoint cannot be served; `status`/`code` are the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
