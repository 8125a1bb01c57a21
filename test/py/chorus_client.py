"""A small, independent Chorus client written from docs/PROTOCOL.md alone.

Uses Debian's python3-websockets (asyncio API, `websockets.connect`; 10.x and later).
Nothing here is derived from the server's source: every behaviour cites the section of
PROTOCOL.md it implements.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import secrets
import urllib.parse
from typing import Any, Callable, Optional

import websockets

# Section 4: codes after which a client must not reconnect.
NO_RECONNECT = {1000} | set(range(4500, 5000))


def backoff_ms(attempt: int) -> float:
    """Section 4: full-jitter exponential backoff."""
    return random.uniform(0, min(30000, 1000 * 2 ** attempt))


class ChorusError(Exception):
    """An `error` reply (section 2) or a locally produced error (section 9: TIMEOUT, DISCONNECTED)."""

    def __init__(self, code: str, message: str = "", data: Optional[dict] = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data or {}


class Subscription:
    """Per-channel position tracking (sections 5.1 and 6.1)."""

    def __init__(self, client: "ChorusClient", channel: str):
        self.client = client
        self.channel = channel
        self.offset: Optional[int] = None
        self.epoch: Optional[str] = None
        self.active = False            # the subscribe ack has been received
        self.pre_ack: list[dict] = []  # messages before a fresh subscribe's ack (snapshot)
        self.recovering = False        # a history fill is in flight
        self.buffer: list[dict] = []   # live messages held back while recovering
        self.delivered: list[dict] = []  # what the application saw, in order
        self.duplicates = 0
        self.gaps: list[dict] = []       # {"from": pos, "to": gap_offset, "filled": n, "pages": k}
        self.unrecovered: list[dict] = []  # epoch changes / failed recoveries ("reload your state")
        self.drop_next = 0               # test hook: ignore this many incoming live messages
        self.dropped: list[int] = []
        self.last_ack: Optional[dict] = None
        self.anomalies: list[str] = []   # protocol violations seen while tracking

    def position(self) -> Optional[dict]:
        if self.offset is None:
            return None
        return {"offset": self.offset, "epoch": self.epoch}

    # -- delivery ---------------------------------------------------------------------------
    def _deliver(self, d: dict, how: str) -> None:
        self.delivered.append(d)
        self.client._notify()

    def _set_position(self, offset: int, epoch: str) -> None:
        self.offset = offset
        self.epoch = epoch

    def on_live(self, d: dict) -> None:
        """An incoming `message` frame for this channel."""
        if d.get("ephemeral"):  # 6.1: no offset/epoch
            self._deliver(d, "ephemeral")
            return
        if self.drop_next > 0:  # test hook: pretend the frame was lost
            self.drop_next -= 1
            self.dropped.append(d.get("offset"))
            return
        if not self.active and self.offset is None:
            # 5.1: snapshot (or anything) before a fresh subscribe's ack.
            self.pre_ack.append(d)
            return
        if self.recovering:
            self.buffer.append(d)
            return
        self._track(d)

    def _track(self, d: dict) -> None:
        off, ep = d.get("offset"), d.get("epoch")
        if not isinstance(off, int) or not isinstance(ep, str):
            self.anomalies.append(f"message without offset/epoch: {d!r}")
            return
        if ep != self.epoch:
            # 6.1: a different epoch means history was lost -> treat as recovered:false.
            self.unrecovered.append({"reason": "epoch", "old": self.position(), "new": {"offset": off, "epoch": ep}})
            self._set_position(off, ep)
            self._deliver(d, "live")
            return
        if off <= self.offset:
            self.duplicates += 1  # 6.1: duplicate, drop it
            return
        if off == self.offset + 1:
            self._set_position(off, ep)
            self._deliver(d, "live")
            return
        # 6.1: a gap -> recover with history since our position, then continue.
        self.recovering = True
        self.buffer.append(d)
        gap = {"from": self.offset, "to": off, "filled": 0, "pages": 0}
        self.gaps.append(gap)
        self.client._spawn(self._fill_gap(gap))

    async def _fill_gap(self, gap: dict) -> None:
        target = gap["to"] - 1
        try:
            while self.offset < target:
                before = self.offset
                res = await self.client.history(
                    self.channel, since={"offset": self.offset, "epoch": self.epoch},
                    limit=self.client.history_page)
                gap["pages"] += 1
                for p in res["publications"]:
                    if isinstance(p.get("offset"), int) and p["offset"] > target:
                        break  # the rest is (or will be) in the live buffer
                    if p.get("offset") == self.offset + 1 and p.get("epoch") == self.epoch:
                        self._set_position(p["offset"], p["epoch"])
                        self._deliver(p, "history")
                        gap["filled"] += 1
                    elif isinstance(p.get("offset"), int) and p["offset"] <= self.offset:
                        self.duplicates += 1
                    else:
                        self.anomalies.append(f"history page not contiguous at {self.offset}: {p.get('offset')}")
                        break
                if self.offset == before:
                    # Nothing retained covers the gap: history is gone, app must reload.
                    self.unrecovered.append({"reason": "history-exhausted", "at": self.offset, "top": res.get("offset")})
                    self._set_position(target, self.epoch)
                    break
        except ChorusError as err:
            # 5.4: UNRECOVERABLE_POSITION when the epoch differs.
            self.unrecovered.append({"reason": err.code, "at": self.offset})
            self._set_position(target, self.epoch)
        finally:
            self.recovering = False
            held, self.buffer = self.buffer, []
            for d in held:
                if self.recovering:  # a new gap opened while draining
                    self.buffer.append(d)
                else:
                    self._track(d)

    # -- subscribe ack handling (called synchronously in the reader, before the next frame) --
    def on_ack(self, ack: dict, since: Optional[dict]) -> None:
        self.last_ack = ack
        self.active = True
        if since is not None and ack.get("recovered") is True:
            # The replay arrived as ordinary messages and was tracked; positions must agree.
            if self.offset != ack.get("offset") or self.epoch != ack.get("epoch"):
                self.anomalies.append(f"recovered ack at {ack.get('offset')}/{ack.get('epoch')} but tracked {self.offset}/{self.epoch}")
            self._set_position(ack["offset"], ack["epoch"])
            return
        if since is not None:
            self.unrecovered.append({"reason": "recovered:false", "since": since, "ack": ack})
        self._set_position(ack["offset"], ack["epoch"])
        held, self.pre_ack = self.pre_ack, []
        for d in held:  # snapshot: delivered as state, covered by the ack position
            self._deliver(d, "snapshot")


class ChorusClient:
    def __init__(self, url: str, token: str, name: str = "py", history_page: int = 100):
        self.url = url
        self.token = token
        self.name = name
        self.history_page = history_page
        self.ws = None
        self.connected: Optional[dict] = None
        self.frames: list[dict] = []       # every frame received, in order
        self.subs: dict[str, Subscription] = {}
        self.close_code: Optional[int] = None
        self.close_reason = ""
        self._ids = itertools.count(1)
        self._prefix = f"{name}-{secrets.token_hex(4)}-"
        self._pending: dict[str, tuple[asyncio.Future, Optional[Callable[[dict], None]]]] = {}
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future]] = []
        self._reader: Optional[asyncio.Task] = None
        self._tasks: set[asyncio.Task] = set()
        self._connected_fut: Optional[asyncio.Future] = None
        self.unknown_channel_messages: list[dict] = []

    # -- connection -------------------------------------------------------------------------
    def _endpoint(self, query_token: Optional[str]) -> str:
        if query_token is None:
            return self.url
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}token={urllib.parse.quote(query_token, safe='')}"

    async def connect(self, *, header: bool = False, query_token: Optional[str] = None, timeout: float = 5) -> dict:
        """Section 1: open the socket with ?token= (or an Authorization header) and read `connected`."""
        loop = asyncio.get_running_loop()
        self._connected_fut = loop.create_future()
        self.close_code = None
        kwargs: dict[str, Any] = {"max_size": 2 ** 20, "open_timeout": timeout}
        if header:
            kwargs["extra_headers"] = {"Authorization": f"Bearer {self.token}"}
            url = self._endpoint(query_token)
        else:
            url = self._endpoint(self.token if query_token is None else query_token)
        self.ws = await websockets.connect(url, **kwargs)
        self._reader = asyncio.create_task(self._read_loop(self.ws))
        self.connected = await asyncio.wait_for(self._connected_fut, timeout)
        return self.connected

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader

    async def reconnect(self) -> dict[str, dict]:
        """Reconnect and resubscribe every tracked channel with `since` (sections 4, 5.1)."""
        await self.connect()
        acks = {}
        for ch, sub in list(self.subs.items()):
            since = sub.position()
            acks[ch] = await self.subscribe(ch, since=since, _existing=sub)
        return acks

    async def _read_loop(self, ws) -> None:
        try:
            async for msg in ws:
                if isinstance(msg, bytes):
                    self._violation(f"server sent a binary message: {msg[:60]!r}")
                    continue
                # Section 2, batching: split on \n, parse each non-empty part in order.
                for part in msg.split("\n"):
                    if part:
                        self._on_frame(json.loads(part))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason or ""
            err = ChorusError("DISCONNECTED", f"closed {self.close_code}")
            for fut, _ in self._pending.values():
                if not fut.done():
                    fut.set_exception(err)
            self._pending.clear()
            if self._connected_fut is not None and not self._connected_fut.done():
                self._connected_fut.set_exception(err)
            self._notify()

    def _violation(self, text: str) -> None:
        self.frames.append({"event": "__violation__", "data": text})

    def _on_frame(self, frame: dict) -> None:
        self.frames.append(frame)
        ev = frame.get("event")
        if ev in ("ack", "error") and "id" in frame:
            entry = self._pending.pop(frame["id"], None)
            if entry is None:
                self._violation(f"reply for unknown id {frame['id']!r}")
            else:
                fut, hook = entry
                if hook is not None:
                    hook(frame)
                if not fut.done():
                    fut.set_result(frame)
        elif ev == "connected":
            if self._connected_fut is not None and not self._connected_fut.done():
                self._connected_fut.set_result(frame.get("data"))
        elif ev == "message":
            d = frame.get("data") or {}
            sub = self.subs.get(d.get("channel"))
            if sub is None:
                self.unknown_channel_messages.append(d)
            else:
                sub.on_live(d)
        self._notify()

    # -- waiting ----------------------------------------------------------------------------
    def _notify(self) -> None:
        keep = []
        for pred, fut in self._waiters:
            if fut.done():
                continue
            try:
                hit = pred()
            except Exception as exc:  # noqa: BLE001
                fut.set_exception(exc)
                continue
            if hit:
                fut.set_result(True)
            else:
                keep.append((pred, fut))
        self._waiters = keep

    async def wait_until(self, pred: Callable[[], bool], timeout: float = 5, what: str = "condition") -> None:
        if pred():
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise ChorusError("TIMEOUT", f"timed out waiting for {what}") from None

    async def next_frame(self, pred: Callable[[dict], bool], start: int, timeout: float = 5) -> dict:
        """The first frame at index >= start matching pred."""
        found: list[dict] = []

        def check() -> bool:
            for f in self.frames[start:]:
                if pred(f):
                    found.append(f)
                    return True
            return False

        await self.wait_until(check, timeout, "frame")
        return found[0]

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- requests ---------------------------------------------------------------------------
    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    async def send_raw(self, payload) -> None:
        await self.ws.send(payload)

    async def request(self, event: str, data: Any = None, *, id: Optional[str] = None, timeout: float = 5,
                      hook: Optional[Callable[[dict], None]] = None) -> dict:
        """Section 2: a frame with an id gets exactly one ack or error with the same id."""
        rid = id or self.new_id()
        fut = asyncio.get_running_loop().create_future()
        self._pending[rid] = (fut, hook)
        frame = {"event": event, "id": rid}
        if data is not None:
            frame["data"] = data
        await self.ws.send(json.dumps(frame, separators=(",", ":")))
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self._pending.pop(rid, None)
            raise ChorusError("TIMEOUT", f"no reply to {event} {rid}") from None

    async def call(self, event: str, data: Any = None, **kw) -> Any:
        reply = await self.request(event, data, **kw)
        if reply["event"] == "error":
            d = reply.get("data") or {}
            raise ChorusError(d.get("code", "?"), d.get("message", ""), d)
        return reply.get("data")

    async def subscribe(self, channel: str, *, since: Optional[dict] = None, snapshot: bool = False,
                        _existing: Optional[Subscription] = None) -> dict:
        sub = _existing or Subscription(self, channel)
        sub.active = False
        sub.recovering = False
        sub.buffer = []
        if since is not None:
            sub._set_position(since["offset"], since["epoch"])
        elif _existing is None:
            sub.offset = sub.epoch = None
        self.subs[channel] = sub
        data: dict[str, Any] = {"channel": channel}
        if since is not None:
            data["since"] = since
        if snapshot:
            data["snapshot"] = True

        def hook(frame: dict) -> None:
            if frame["event"] == "ack":
                sub.on_ack(frame["data"], since)
            else:
                self.subs.pop(channel, None)

        try:
            return await self.call("subscribe", data, hook=hook)
        except ChorusError:
            self.subs.pop(channel, None)
            raise

    async def unsubscribe(self, channel: str) -> dict:
        res = await self.call("unsubscribe", {"channel": channel})
        self.subs.pop(channel, None)
        return res

    async def publish(self, channel: str, data: Any, *, id: Optional[str] = None, ephemeral: bool = False) -> dict:
        payload: dict[str, Any] = {"channel": channel, "data": data}
        if ephemeral:
            payload["ephemeral"] = True
        return await self.call("publish", payload, id=id)

    async def history(self, channel: str, *, since: Optional[dict] = None, limit: Optional[int] = None,
                      reverse: bool = False) -> dict:
        data: dict[str, Any] = {"channel": channel}
        if since is not None:
            data["since"] = since
        if limit is not None:
            data["limit"] = limit
        if reverse:
            data["reverse"] = True
        return await self.call("history", data)

    async def history_all(self, channel: str, *, since: Optional[dict] = None, limit: int = 100) -> tuple[list[dict], int]:
        """Section 5.4 paging: repeat with since.offset = the last offset received."""
        out: list[dict] = []
        pages = 0
        while True:
            res = await self.history(channel, since=since, limit=limit)
            pages += 1
            pubs = res["publications"]
            out.extend(pubs)
            if not pubs or pubs[-1]["offset"] >= res["offset"]:
                return out, pages
            since = {"offset": pubs[-1]["offset"], "epoch": res["epoch"]}
