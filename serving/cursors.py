"""PageCursorSigner: the feeds' `next_cursor`, signed, bound to one viewer and surface, expiring.

A cursor is `<payload>.<mac>`, both base64url: the payload packs a format byte, the viewer (int64),
the surface, the offset (uint32) and the expiry (epoch ms, the service's clock); the MAC is
HMAC-SHA256 over the payload with the service's cursor secret (data.settings.serving_secrets: the
same in every worker). Nothing in a cursor is taken on trust: a cursor the service did not sign (an
edited, truncated or home-made one), one issued for another viewer or surface, or one past its
expiry is refused (the caller's 400) before any stage runs. Offsets end at `max_offset`, so a page's
positions always fit the impressions log (int32).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

FORMAT = 1
_LAYOUT = struct.Struct(">BqBIQ")  # format, viewer, surface, offset, expires_ms
_SURFACES = {"home": 1, "explore": 2}
NOT_OURS = "cursor is not one this service issued (pass next_cursor back unchanged)"


class BadCursor(ValueError):
    """A cursor the service will not honour; the message tells the caller what to do."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageCursorSigner:
    def __init__(self, secret: str | bytes, ttl_s: float, max_offset: int):
        self._key = secret.encode() if isinstance(secret, str) else bytes(secret)
        self.ttl_ms, self.max_offset = int(ttl_s * 1000), max_offset

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def issue(self, viewer_id: int, surface: str, offset: int, now_ms: int) -> str | None:
        """The cursor of the page at `offset`; None when paging ends there (`max_offset`)."""
        if offset >= self.max_offset:
            return None
        payload = _LAYOUT.pack(FORMAT, viewer_id, _SURFACES[surface], offset, now_ms + self.ttl_ms)
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def offset(self, cursor: str | None, viewer_id: int, surface: str, now_ms: int) -> int:
        """The offset `cursor` continues from (0 without one), or BadCursor."""
        if not cursor:
            return 0
        try:
            text, mac_text = cursor.split(".")
            payload, mac = _unb64(text), _unb64(mac_text)
        except (ValueError, binascii.Error):
            raise BadCursor(NOT_OURS) from None
        if (len(payload) != _LAYOUT.size or _b64(payload) != text or _b64(mac) != mac_text  # one spelling only
                or not hmac.compare_digest(mac, self._mac(payload))):
            raise BadCursor(NOT_OURS)
        fmt, viewer, surface_code, offset, expires_ms = _LAYOUT.unpack(payload)
        if fmt != FORMAT or offset > self.max_offset:
            raise BadCursor(NOT_OURS)
        if viewer != viewer_id or surface_code != _SURFACES[surface]:
            raise BadCursor("cursor was issued for another viewer or surface: pass each page's next_cursor "
                            "back with the same viewer_id to the same route")
        if now_ms > expires_ms:
            raise BadCursor("cursor expired: ask for the first page again (no cursor)")
        return offset
