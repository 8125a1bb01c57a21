"""Speak `chorus.v1.msgpack` from docs/PROTOCOL.md alone (sections 1.4, 2.2 and 2.3).

Debian's python3-msgpack and python3-websockets (asyncio API). Reads its config as JSON on
stdin; prints one JSON line per step: {"step": name, "ok": bool, ...}.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys

import msgpack
import websockets

MSGPACK = "chorus.v1.msgpack"


class Conn:
    """One connection; frames decoded per section 2.3 (several concatenated values per message)."""

    def __init__(self, ws, binary: bool):
        self.ws = ws
        self.binary = binary
        self.frames: list[dict] = []
        self.kinds: list[str] = []
        self._cond = asyncio.Condition()
        self._task = asyncio.create_task(self._read())
        self._next_id = 0

    async def _read(self):
        async for message in self.ws:
            if isinstance(message, bytes):
                self.kinds.append("binary")
                unpacker = msgpack.Unpacker(raw=False)
                unpacker.feed(message)
                frames = list(unpacker)
            else:
                self.kinds.append("text")
                frames = [json.loads(line) for line in message.split("\n") if line]
            async with self._cond:
                self.frames.extend(frames)
                self._cond.notify_all()

    async def wait(self, match, timeout=10):
        async def find():
            async with self._cond:
                while True:
                    for f in self.frames:
                        if match(f):
                            return f
                    await self._cond.wait()
        return await asyncio.wait_for(find(), timeout)

    async def send(self, *frames: dict):
        if self.binary:
            await self.ws.send(b"".join(msgpack.packb(f, use_bin_type=True) for f in frames))
        else:
            await self.ws.send("\n".join(json.dumps(f) for f in frames))

    async def request(self, event: str, data) -> dict:
        self._next_id += 1
        fid = f"py{self._next_id}"
        await self.send({"event": event, "id": fid, "data": data})
        return await self.wait(lambda f: f.get("id") == fid and f["event"] in ("ack", "error"))


def out(step: str, ok: bool, **extra):
    print(json.dumps({"step": step, "ok": ok, **extra}), flush=True)


async def main():
    cfg = json.loads(sys.stdin.read())
    url, channel = cfg["url"], cfg["channel"]
    # 1.4: offer chorus.v1.msgpack; the server answers it.
    mws = await websockets.connect(f"{url}?token={cfg['tokens']['a']}", subprotocols=[MSGPACK], max_size=None)
    m = Conn(mws, binary=True)
    connected = await m.wait(lambda f: f["event"] == "connected")
    out("negotiate", mws.subprotocol == MSGPACK and m.kinds[0] == "binary", subprotocol=mws.subprotocol, user=connected["data"]["user"])

    # A JSON client on the same channel (no subprotocol offered: section 1.4's default).
    jws = await websockets.connect(f"{url}?token={cfg['tokens']['b']}", max_size=None)
    j = Conn(jws, binary=False)
    await j.wait(lambda f: f["event"] == "connected")

    # 2.3: two frames in one binary message get two replies.
    await m.send({"event": "subscribe", "id": "s1", "data": {"channel": channel}}, {"event": "ping", "id": "p1"})
    s1 = await m.wait(lambda f: f.get("id") == "s1")
    p1 = await m.wait(lambda f: f.get("id") == "p1")
    jack = await j.request("subscribe", {"channel": channel})
    out("batched-requests", s1["event"] == "ack" and p1["event"] == "ack" and jack["event"] == "ack", ack=s1["data"])

    # 2.3: bin anywhere in data; a file in chunks, byte-identical at both subscribers.
    blob = os.urandom(int(cfg["fileBytes"]))
    chunk = 48 * 1024
    offsets = []
    for seq, start in enumerate(range(0, len(blob), chunk)):
        ack = await m.request("publish", {"channel": channel, "data": {"seq": seq, "bytes": blob[start:start + chunk]}})
        if ack["event"] != "ack":
            out("file", False, errors=[ack])
            return
        offsets.append(ack["data"]["offset"])
    n = len(offsets)
    await m.wait(lambda f: f["event"] == "message" and f["data"]["data"]["seq"] == n - 1, timeout=30)
    await j.wait(lambda f: f["event"] == "message" and f["data"]["data"]["seq"] == n - 1, timeout=30)
    got_m = b"".join(f["data"]["data"]["bytes"] for f in m.frames if f["event"] == "message")
    # 2.2: JSON subscribers get {"$bin": base64}.
    got_j = b"".join(base64.b64decode(f["data"]["data"]["bytes"]["$bin"]) for f in j.frames if f["event"] == "message")
    digest = hashlib.sha256(blob).hexdigest()
    out(
        "file",
        hashlib.sha256(got_m).hexdigest() == digest and hashlib.sha256(got_j).hexdigest() == digest,
        chunks=n,
        types=sorted({type(f["data"]["data"]["bytes"]).__name__ for f in m.frames if f["event"] == "message"}),
    )

    # 2.2 the other way: a JSON client publishes {"$bin"}, the MessagePack subscriber gets bin.
    ack = await j.request("publish", {"channel": channel, "data": {"seq": -1, "bytes": {"$bin": base64.b64encode(b"\x00\xffhi").decode()}}})
    got = await m.wait(lambda f: f["event"] == "message" and f["data"]["data"]["seq"] == -1)
    out("json-to-bin", ack["event"] == "ack" and got["data"]["data"]["bytes"] == b"\x00\xffhi")

    # 2.3: text on a MessagePack connection, and bytes that are not MessagePack, are BAD_FRAME.
    await mws.send('{"event":"ping"}')
    text_err = await m.wait(lambda f: f["event"] == "error" and f["data"].get("event") == "text")
    out("bad-frames", text_err["data"]["code"] == "BAD_FRAME")

    # 1.4: an offer of protocols the server does not speak gets none back, and JSON.
    other = await websockets.connect(f"{url}?token={cfg['tokens']['a']}", subprotocols=["chorus.v2.msgpack"])
    first = await asyncio.wait_for(other.recv(), 10)
    out("unknown-offer", other.subprotocol is None and isinstance(first, str) and json.loads(first.split("\n")[0])["event"] == "connected")
    await other.close()
    await mws.close()
    await jws.close()
    out("summary", True)


asyncio.run(main())
