"""ARI REST client: dynamic res_pjsip configuration and channel control.

Thin on purpose: one method per ARI resource used, errors mapped to :mod:`.errors`.
"""

from __future__ import annotations

import json as jsonlib
import logging
from collections.abc import Mapping
from typing import Any, Protocol, Self

import httpx

from centrex.asterisk.errors import AsteriskError, AsteriskUnavailable
from centrex.config import AriRole, Settings

log = logging.getLogger(__name__)

# ARI's hangup reasons map onto Q.850 causes and from there onto SIP codes in chan_pjsip:
# busy -> 17 -> 486, unallocated -> 1 -> 404, congestion -> 34 -> 503, rejected -> 21 -> 403.
HANGUP_REASONS = frozenset(
    {
        "normal",
        "busy",
        "congestion",
        "no_answer",
        "timeout",
        "rejected",
        "unallocated",
        "normal_unspecified",
        "number_incomplete",
        "codec_mismatch",
        "interworking",
        "failure",
        "answered_elsewhere",
    }
)


class AriTransport(Protocol):
    """Carries one ARI REST request; raises :class:`AsteriskUnavailable` when it can't."""

    async def send(
        self, method: str, path: str, params: Mapping[str, Any] | None, json_body: Any
    ) -> tuple[int, str]: ...  # status code, body text

    async def aclose(self) -> None: ...


class HttpTransport:
    """ARI over HTTP: for the API and the reconciler, which have no events websocket."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=(username, password),
            timeout=timeout,
            # Provisioning bursts (thousands of lines) reuse a handful of connections.
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )

    async def send(
        self, method: str, path: str, params: Mapping[str, Any] | None, json_body: Any
    ) -> tuple[int, str]:
        try:
            response = await self._http.request(method, path, params=params, json=json_body)
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            raise AsteriskUnavailable(
                f"ARI {method} {path}: {type(exc).__name__}: {exc or 'no answer'}"
            ) from exc
        return response.status_code, response.text

    async def aclose(self) -> None:
        await self._http.aclose()


class AriClient:
    """The ARI resources centrex uses, over HTTP or over the events websocket."""

    def __init__(self, transport: AriTransport) -> None:
        self.transport = transport

    @classmethod
    def from_settings(cls, settings: Settings, role: AriRole) -> Self:
        """ARI over HTTP as ``role``'s own user (Settings.ari_user)."""
        username, password = settings.ari_user(role)
        return cls(HttpTransport(settings.ari_url, username, password, settings.asterisk_timeout_s))

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        ok_missing: bool = False,
    ) -> Any:
        status, body = await self.transport.send(method, path, params, json)
        if status == 404 and ok_missing:
            return None
        if status >= 500:
            raise AsteriskUnavailable(f"ARI {method} {path}: {status} {body}")
        if status >= 400:
            raise AsteriskError(f"ARI {method} {path}: {status} {body}")
        return jsonlib.loads(body) if body else None

    # --- /asterisk ----------------------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        return await self._request("GET", "/asterisk/info")

    async def put_object(
        self, config_class: str, object_type: str, object_id: str, fields: Mapping[str, str]
    ) -> None:
        """Create or update a sorcery object (written to the astdb backend, so it persists)."""
        body = {"fields": [{"attribute": k, "value": v} for k, v in fields.items()]}
        await self._request(
            "PUT", f"/asterisk/config/dynamic/{config_class}/{object_type}/{object_id}", json=body
        )

    async def get_object(
        self, config_class: str, object_type: str, object_id: str
    ) -> dict[str, str] | None:
        tuples = await self._request(
            "GET",
            f"/asterisk/config/dynamic/{config_class}/{object_type}/{object_id}",
            ok_missing=True,
        )
        if tuples is None:
            return None
        return {t["attribute"]: t["value"] for t in tuples}

    async def delete_object(self, config_class: str, object_type: str, object_id: str) -> None:
        """A missing object is not an error: delete is idempotent."""
        await self._request(
            "DELETE",
            f"/asterisk/config/dynamic/{config_class}/{object_type}/{object_id}",
            ok_missing=True,
        )

    # --- /applications ------------------------------------------------------------------------
    async def filter_events(self, app: str, allowed: list[str]) -> None:
        """Asterisk sends the Stasis app only these event types (the filter is Asterisk's)."""
        await self._request(
            "PUT",
            f"/applications/{app}/eventFilter",
            json={"allowed": [{"type": t} for t in allowed]},
        )

    # --- /channels ----------------------------------------------------------------------------
    async def list_channels(self) -> list[dict[str, Any]]:
        return await self._request("GET", "/channels")

    async def get_channel(self, channel_id: str) -> dict[str, Any] | None:
        return await self._request("GET", f"/channels/{channel_id}", ok_missing=True)

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self._request(
            "POST", f"/channels/{channel_id}/variable", params={"variable": name, "value": value}
        )

    async def channel_exists(self, channel_id: str) -> bool:
        """Whether Asterisk still has this channel (raises AsteriskUnavailable if it can't say)."""
        return await self._request("GET", f"/channels/{channel_id}", ok_missing=True) is not None

    async def get_variable(self, channel_id: str, name: str) -> str | None:
        try:
            result = await self._request(
                "GET",
                f"/channels/{channel_id}/variable",
                params={"variable": name},
                ok_missing=True,
            )
        except AsteriskError:
            return None
        return None if result is None else result.get("value")

    async def continue_in_dialplan(
        self, channel_id: str, context: str, extension: str = "s", priority: int = 1
    ) -> None:
        await self._request(
            "POST",
            f"/channels/{channel_id}/continue",
            params={"context": context, "extension": extension, "priority": priority},
        )

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        if reason not in HANGUP_REASONS:
            raise ValueError(f"unknown ARI hangup reason {reason!r}")
        await self._request(
            "DELETE", f"/channels/{channel_id}", params={"reason": reason}, ok_missing=True
        )
