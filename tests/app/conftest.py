from __future__ import annotations

import pytest

import app.zerocopy


@pytest.fixture
def sendfiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts of every sendfile the server did."""
    counts: list[int] = []
    real = app.zerocopy._sendfile_all

    def counting(sock: int, fd: int, offset: int, count: int) -> int:
        counts.append(count)
        return real(sock, fd, offset, count)

    monkeypatch.setattr(app.zerocopy, "_sendfile_all", counting)
    return counts
