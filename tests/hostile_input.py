"""Hostile values for conversation IDs, shared by the bad-input tests."""

from __future__ import annotations

HOSTILE: list[object] = [
    "../../api/v2/users/me", "..%2F..%2Fx", "%2e%2e%2f", "3b47a74f-a827-4166-ae62-f6ba6d7268ae/../x",
    "3b47a74f-a827-4166-ae62-f6ba6d7268ae%2F", "not-a-uuid", "", "   ", None, 42, 4.2, True, ["x"], {"id": 1},
    "x" * 10_000, "3b47a74f-a827-4166-ae62-f6ba6d7268a\u0435", "\uff13b47a74f-a827-4166-ae62-f6ba6d7268ae",
    '=HYPERLINK("http://evil")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "\x00", "3b47a74f-a827-4166-ae62-f6ba6d7268ae\n1",
]
TEXT_HOSTILE = [h for h in HOSTILE if isinstance(h, str) and "\n" not in h and "\x00" not in h and h.strip()]
