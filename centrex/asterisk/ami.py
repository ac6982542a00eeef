"""AMI client on panoramisk: actions with timeouts, events, connection state.

panoramisk reconnects by itself (every ``reconnect_timeout`` seconds, forever); this wrapper adds
what an operator needs around it: a clear "is it up" answer, actions that fail fast with
:class:`AsteriskUnavailable` instead of hanging while Asterisk is away, and hooks on
(re)connection so callers can resynchronise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Self

from panoramisk import Manager
from panoramisk.message import Message

from centrex import metrics
from centrex.asterisk.errors import AsteriskError, AsteriskUnavailable
from centrex.config import Settings

log = logging.getLogger(__name__)

EventHandler = Callable[[Message], Awaitable[None] | None]


class _Manager(Manager):
    """panoramisk's Manager, that stays closed once closed: its own reconnection (scheduled
    after a failed or lost connection) would otherwise open a session again later."""

    closed = False
    #: Told of every failed connection attempt (refused, unreachable): panoramisk only logs it
    #: and tries again later, so a caller waiting to log in would otherwise wait its timeout.
    on_connect_error: Callable[[BaseException], None] | None = None

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        if self.closed:
            return None
        return super().connect(*args, **kwargs)

    def connection_made(self, f: Any) -> None:
        if self.closed:
            if not f.cancelled() and f.exception() is None:
                f.result()[0].close()  # a connection that completed after close()
            return
        error = None if f.cancelled() else f.exception()
        if error is not None and self.on_connect_error is not None:
            self.on_connect_error(error)
        super().connection_made(f)


class AmiClient:
    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        timeout: float = 5.0,
        reconnect_s: int = 1,
        events: tuple[str, ...] = (),
        track_connection: bool = True,
    ) -> None:
        """``events``: the AMI event names this client wants; none means no events at all.

        Asterisk sends a busy platform's every event (dozens per call: VarSet, Newexten, …) to a
        connection that asks for events; parsing them all would cost the daemon more than its
        decisions, so the wanted ones are whitelisted on the server side (AMI ``Filter``).
        """
        self.timeout = timeout
        self.events = events
        # A long-lived client reports its connection (centrex_asterisk_connected{interface=
        # "ami"}); a session opened for one piece of work and closed after it does not.
        self.track_connection = track_connection
        self.logged_in = asyncio.Event()
        # Set when a connection attempt fails (wait_connected(fail_fast=True) returns at once).
        self.connect_failed = asyncio.Event()
        self.connect_error: BaseException | None = None
        self.reconnects = 0
        self._on_login: list[Callable[[], Awaitable[None]]] = []
        self._callbacks: set[asyncio.Future[None]] = set()
        # Actions sent and not yet answered. panoramisk forgets an action that had begun to answer
        # (a DBGetTree half streamed) when the connection drops: its future would never resolve,
        # and whoever awaits it would hang for the whole action timeout. They are failed here.
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._manager = _Manager(
            host=host,
            port=port,
            username=username,
            secret=secret,
            ping_delay=5,
            ping_interval=5,
            reconnect_timeout=reconnect_s,
            events="on" if events else "off",
            on_login=self._logged_in,
            on_disconnect=self._disconnected,
            log=logging.getLogger("centrex.ami.panoramisk"),
        )
        self._manager.on_connect_error = self._connect_error

    @classmethod
    def from_settings(
        cls, settings: Settings, *, events: tuple[str, ...] = (), track_connection: bool = True
    ) -> Self:
        return cls(
            settings.asterisk_host,
            settings.ami_port,
            settings.ami_username,
            settings.ami_secret.get_secret_value(),
            timeout=settings.asterisk_timeout_s,
            events=events,
            track_connection=track_connection,
        )

    # --- connection -------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; reconnects forever until :meth:`close`."""
        self._manager.loop = asyncio.get_running_loop()
        self._manager.connect()

    def close(self) -> None:
        self._manager.closed = True
        self._manager.close()
        self.logged_in.clear()
        self._fail_in_flight()

    @property
    def connected(self) -> bool:
        return self.logged_in.is_set()

    def on_login(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` after every successful login, the first and each reconnection."""
        self._on_login.append(callback)

    def _logged_in(self, _manager: Manager) -> None:
        if self.logged_in.is_set():
            return
        future = asyncio.ensure_future(self._after_login())
        self._callbacks.add(future)
        future.add_done_callback(self._callbacks.discard)

    async def _after_login(self) -> None:
        for name in self.events:
            # A whitelist: once one filter exists, only matching events are sent.
            future = self._manager.send_action(
                {"Action": "Filter", "Operation": "Add", "Filter": f"Event: {name}"}
            )
            try:
                await asyncio.wait_for(future, self.timeout)
            except TimeoutError:
                log.warning("AMI filter for %s not acknowledged", name)
        self.logged_in.set()
        if self.track_connection:
            metrics.ASTERISK_CONNECTED.labels("ami").set(1)
            metrics.ASTERISK_RECONNECTS.labels("ami").inc()
        log.log(
            logging.INFO if self.track_connection else logging.DEBUG,
            "AMI logged in%s",
            f" (events: {', '.join(self.events)})" if self.events else "",
        )
        for callback in self._on_login:
            await callback()

    def _disconnected(self, _manager: Manager, exc: object) -> None:
        if self.logged_in.is_set():
            self.reconnects += 1
            log.warning("AMI connection lost (%s); reconnecting", exc)
        self.logged_in.clear()
        if self.track_connection:
            metrics.ASTERISK_CONNECTED.labels("ami").set(0)
        self._fail_in_flight()

    def _answered(self, future: asyncio.Future[Any]) -> None:
        self._in_flight.discard(future)
        if not future.cancelled():
            future.exception()  # retrieved: a caller that gave up already has its own error

    def _fail_in_flight(self) -> None:
        """Fail every unanswered action: its answer, if any, went with the connection. Callers see
        :class:`AsteriskUnavailable` at once, as if they had sent it while Asterisk was away."""
        for future in list(self._in_flight):
            if not future.done():
                future.set_exception(AsteriskUnavailable("AMI connection lost before the answer"))
        self._in_flight.clear()

    def _connect_error(self, error: BaseException) -> None:
        self.connect_error = error
        self.connect_failed.set()

    async def wait_connected(self, within_s: float, *, fail_fast: bool = False) -> None:
        """Wait until logged in. ``fail_fast``: give up at the first failed connection attempt
        (Asterisk refusing it: not running) instead of waiting for a later one to succeed."""
        waits = [asyncio.ensure_future(self.logged_in.wait())]
        if fail_fast:
            waits.append(asyncio.ensure_future(self.connect_failed.wait()))
        try:
            await asyncio.wait(waits, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if self.logged_in.is_set():
            return
        if self.connect_failed.is_set() and fail_fast:
            raise AsteriskUnavailable(f"AMI connection failed ({self.connect_error})")
        raise AsteriskUnavailable(f"AMI not logged in after {within_s:.0f}s")

    def on_event(self, pattern: str, handler: Callable[[Message], Any]) -> None:
        self._manager.register_event(pattern, lambda _m, event: handler(event))

    # --- actions ----------------------------------------------------------------------------
    async def action(
        self, action: dict[str, str], *, as_list: bool | None = None, within_s: float | None = None
    ) -> Any:
        if not self.connected:
            raise AsteriskUnavailable(f"AMI not connected (action {action.get('Action')})")
        # A list action is left to panoramisk to recognise by its first answer ("EventList:
        # start"): told as_list=True, panoramisk never delivers an error answer (it waits for a
        # list the error never starts), so PJSIPShowEndpoint on a deleted endpoint, for one,
        # waited out the whole timeout on every node (a trunk's deletion took 10 s on two).
        future = self._manager.send_action(action, as_list=None if as_list else as_list)
        self._in_flight.add(future)
        future.add_done_callback(self._answered)
        try:
            result = await asyncio.wait_for(asyncio.shield(future), within_s or self.timeout)
        except TimeoutError:
            raise AsteriskUnavailable(f"AMI {action.get('Action')}: no answer") from None
        except AsteriskUnavailable as exc:
            raise AsteriskUnavailable(f"AMI {action.get('Action')}: {exc}") from None
        first = result[0] if isinstance(result, list) else result
        if first.get("Response") == "Error":
            raise AsteriskError(f"AMI {action.get('Action')}: {first.get('Message')}")
        return [result] if as_list and not isinstance(result, list) else result

    async def db_get_tree(self, family: str) -> dict[str, str]:
        """Every astdb key under ``family`` (keys without the family prefix) and its value."""
        try:
            # The whole family in one answer: ~0.7 s for 30,000 objects, so far more than the
            # per-request timeout once a platform holds tens of thousands of lines.
            result = await self.action(
                {"Action": "DBGetTree", "Family": family}, as_list=True, within_s=300
            )
        except AsteriskError as exc:
            if "not found" in str(exc).lower() or "database entry" in str(exc).lower():
                return {}
            raise
        prefix = f"/{family}/"
        entries: dict[str, str] = {}
        for message in result if isinstance(result, list) else [result]:
            if message.get("Event") != "DBGetTreeResponse":
                continue
            key = message.get("Key", "")
            entries[key.removeprefix(prefix)] = message.get("Val", "")
        return entries

    async def sorcery_cache_expire_object(self, cache: str, object_id: str) -> bool:
        """Drop one object from a sorcery memory cache; False if it was not there (or Asterisk
        has no such cache, or no res_sorcery_memory_cache at all)."""
        try:
            await self.action(
                {"Action": "SorceryMemoryCacheExpireObject", "Cache": cache, "Object": object_id}
            )
        except AsteriskError:
            return False
        return True

    async def db_put(self, family: str, key: str, value: str) -> None:
        await self.action({"Action": "DBPut", "Family": family, "Key": key, "Val": value})

    async def db_del(self, family: str, key: str) -> bool:
        """Delete one astdb key; False if it was not there."""
        try:
            await self.action({"Action": "DBDel", "Family": family, "Key": key})
        except AsteriskError as exc:
            if "not found" in str(exc).lower() or "failed" in str(exc).lower():
                return False
            raise
        return True
