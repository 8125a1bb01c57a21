"""Protocol scenarios run against a live Chorus server by test/python-client.test.ts.

Input: one JSON object on stdin (or as argv[1]):
  {"url": "ws://127.0.0.1:PORT/ws", "tokens": {"a": "<JWT for user a>", "b": "<JWT for user b>"},
   "users": {"a": "py-a", "b": "py-b"}, "channel": "chat:py", "badToken": "<invalid JWT>"}
Output: one JSON line per step on stdout: {"step": ..., "ok": bool, ...details}.
Exit status: 0 if every check passed, 1 on any protocol violation, 2 on a crash.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import sys
import traceback
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from chorus_client import ChorusClient, ChorusError  # noqa: E402

FAILURES: list[str] = []


class Step:
    """Collects checks for one step and prints one JSON line."""

    def __init__(self, name: str):
        self.name = name
        self.errors: list[str] = []
        self.info: dict = {}

    def check(self, cond: bool, what: str) -> bool:
        if not cond:
            self.errors.append(what)
        return cond

    def eq(self, got, want, what: str) -> bool:
        return self.check(got == want, f"{what}: got {got!r}, want {want!r}")

    def done(self) -> None:
        line = {"step": self.name, "ok": not self.errors, **self.info}
        if self.errors:
            line["errors"] = self.errors
            FAILURES.extend(f"{self.name}: {e}" for e in self.errors)
        print(json.dumps(line, separators=(",", ":")), flush=True)


def offsets(msgs: list[dict]) -> list[int]:
    return [m.get("offset") for m in msgs]


def contiguous(offs: list[int]) -> bool:
    return all(b == a + 1 for a, b in zip(offs, offs[1:]))


def tracker_clean(step: Step, client: ChorusClient, channel: str) -> None:
    sub = client.subs.get(channel)
    if sub is None:
        step.check(False, f"{client.name} not subscribed to {channel}")
        return
    step.eq(sub.anomalies, [], f"{client.name} tracker anomalies")
    violations = [f["data"] for f in client.frames if f.get("event") == "__violation__"]
    step.eq(violations, [], f"{client.name} frame violations")


async def main(cfg: dict) -> None:
    url, tokens, users = cfg["url"], cfg["tokens"], cfg["users"]
    ch = cfg.get("channel", "chat:py")

    # ---------------------------------------------------------------- connect (1.3, 6.3)
    st = Step("connect")
    a = ChorusClient(url, tokens["a"], "A")
    b = ChorusClient(url, tokens["b"], "B", history_page=2)  # small pages exercise history paging
    ca = await a.connect()
    cb = await b.connect()
    for who, c, user in (("A", ca, users["a"]), ("B", cb, users["b"])):
        st.eq(c.get("user"), user, f"{who} connected.user")
        st.check(isinstance(c.get("client"), str) and c["client"], f"{who} connected.client is a string")
        st.check(isinstance(c.get("node"), str), f"{who} connected.node is a string")
        st.check(isinstance(c.get("pingIntervalMs"), int), f"{who} connected.pingIntervalMs")
        st.check(isinstance(c.get("pingTimeoutMs"), int), f"{who} connected.pingTimeoutMs")
        st.check(isinstance(c.get("expiresAt"), int), f"{who} connected.expiresAt (token has exp)")
        subs = [s.get("channel") for s in c.get("subscriptions", [])]
        st.check(f"user:{user}" in subs, f"{who} personal channel user:{user} in subscriptions {subs}")
    st.check(ca.get("client") != cb.get("client"), "client ids differ")
    st.info["clients"] = [ca.get("client"), cb.get("client")]
    st.done()

    # ---------------------------------------------------------------- (a) publish / receive
    st = Step("a.subscribe")
    ack_b = await b.subscribe(ch)
    ack_a = await a.subscribe(ch)
    for who, ack in (("A", ack_a), ("B", ack_b)):
        st.eq(ack.get("channel"), ch, f"{who} ack.channel")
        st.check(isinstance(ack.get("offset"), int), f"{who} ack.offset is an int")
        st.check(isinstance(ack.get("epoch"), str), f"{who} ack.epoch is a string")
        st.check("recovered" not in ack, f"{who} ack has no 'recovered' without since")
        st.eq(ack.get("history"), True, f"{who} ack.history (chat:* has history)")
        st.eq(ack.get("presence"), True, f"{who} ack.presence (chat:* has presence)")
    st.info["ack"] = ack_b
    st.done()

    st = Step("a.publish20")
    start_b = len(b.subs[ch].delivered)
    acks = []
    for i in range(20):
        acks.append(await a.publish(ch, {"n": i, "text": f"hello {i}"}))
    ack_offs = [x.get("offset") for x in acks]
    st.check(all(isinstance(o, int) for o in ack_offs), f"publish acks carry integer offsets {ack_offs}")
    st.check(contiguous(ack_offs), f"publish ack offsets contiguous {ack_offs}")
    st.eq(ack_offs[0], ack_b["offset"] + 1, "first publish offset continues the subscribe ack offset")
    st.eq({x.get("epoch") for x in acks}, {ack_b["epoch"]}, "publish ack epochs")
    await b.wait_until(lambda: len(b.subs[ch].delivered) >= start_b + 20, what="B to receive 20")
    await a.wait_until(lambda: len(a.subs[ch].delivered) >= 20, what="A (publisher, subscribed) to receive 20")
    got = b.subs[ch].delivered[start_b:]
    st.eq([m["data"]["n"] for m in got], list(range(20)), "B received payloads in order")
    st.eq(offsets(got), ack_offs, "B message offsets equal the publish ack offsets")
    st.eq([m["data"]["n"] for m in a.subs[ch].delivered], list(range(20)), "A (publisher) received its own messages")
    m0 = got[0]
    st.eq(m0.get("channel"), ch, "message.channel")
    st.check(isinstance(m0.get("time"), int), "message.time is an int")
    st.eq((m0.get("publisher") or {}).get("user"), users["a"], "message.publisher.user")
    st.eq((m0.get("publisher") or {}).get("client"), ca.get("client"), "message.publisher.client")
    st.eq((m0.get("publisher") or {}).get("info"), {"name": "Ada"}, "message.publisher.info from the token's name claim")
    st.eq(b.subs[ch].duplicates, 0, "B duplicates")
    st.eq(b.subs[ch].gaps, [], "B gaps")
    tracker_clean(st, b, ch)
    st.info.update(offsets=ack_offs, position=b.subs[ch].position())
    st.done()

    # ---------------------------------------------------------------- (a2) idempotent publish retry (5.3)
    st = Step("a.idempotency")
    pid = a.new_id()
    first = await a.publish(ch, {"n": "idem"}, id=pid)
    retry = await a.publish(ch, {"n": "idem"}, id=pid)
    st.eq(retry, first, "a retried publish with the same id is acked with the original offset/epoch")
    marker = await a.publish(ch, {"n": "marker"})
    st.eq(marker.get("offset"), first.get("offset") + 1, "the retry consumed no offset")
    await b.wait_until(lambda: any(m["data"].get("n") == "marker" for m in b.subs[ch].delivered), what="marker")
    tail = [m["data"].get("n") for m in b.subs[ch].delivered[-2:]]
    st.eq(tail, ["idem", "marker"], "B saw the idempotent publish once, then the marker")
    st.done()

    # ---------------------------------------------------------------- (b) reconnect + recovery with since
    st = Step("b.recover")
    sub_b = b.subs[ch]
    pos = sub_b.position()
    before = len(sub_b.delivered)
    await b.close()
    st.eq(b.close_code, 1000, "B's own close code")
    missed = []
    for i in range(5):
        missed.append(await a.publish(ch, {"n": f"missed{i}"}))
    acks_re = await b.reconnect()
    ack = acks_re[ch]
    st.eq(ack.get("recovered"), True, "ack.recovered")
    replay = sub_b.delivered[before:]
    st.eq([m["data"]["n"] for m in replay], [f"missed{i}" for i in range(5)], "exactly the 5 missed, in order")
    st.eq(offsets(replay), [x["offset"] for x in missed], "replayed offsets equal the publish acks")
    st.eq(replay[0]["offset"] if replay else None, pos["offset"] + 1, "replay starts right after the recorded position")
    st.eq(ack.get("offset"), missed[-1]["offset"], "ack.offset is the last replayed offset")
    st.eq(ack.get("epoch"), pos["epoch"], "ack.epoch unchanged")
    # The replay must come before the ack: find the indices in B's raw frame log.
    idx_ack = next(i for i, f in enumerate(b.frames) if f.get("event") == "ack" and f.get("data", {}).get("channel") == ch
                   and f.get("data", {}).get("recovered") is True)
    idx_msgs = [i for i, f in enumerate(b.frames) if f.get("event") == "message"
                and (f.get("data") or {}).get("offset") in {x["offset"] for x in missed}]
    st.check(idx_msgs and max(idx_msgs) < idx_ack, "replayed messages precede the subscribe ack")
    st.info.update(since=pos, ack=ack)
    # Live continues after the ack with no gap and no duplicate.
    live = await a.publish(ch, {"n": "after-reconnect"})
    await b.wait_until(lambda: sub_b.offset >= live["offset"], what="live after reconnect")
    st.eq(sub_b.delivered[-1]["data"]["n"], "after-reconnect", "live message after recovery")
    st.eq(sub_b.duplicates, 0, "no duplicates")
    st.check(contiguous(offsets(sub_b.delivered)), "everything B delivered so far is contiguous")
    tracker_clean(st, b, ch)
    st.done()

    # ---------------------------------------------------------------- history paging (5.4)
    st = Step("b.history-paging")
    all_pubs, pages = await b.history_all(ch, limit=7)
    offs = offsets(all_pubs)
    st.check(contiguous(offs), f"paged history contiguous: {offs}")
    st.eq(offs[-1] if offs else None, sub_b.offset, "history reaches the stream top")
    st.eq([p["data"] for p in all_pubs], [m["data"] for m in sub_b.delivered if m["offset"] in set(offs)],
          "history payloads equal what B received live")
    rev = await b.history(ch, limit=3, reverse=True)
    st.eq(offsets(rev["publications"]), [sub_b.offset, sub_b.offset - 1, sub_b.offset - 2], "reverse: newest first")
    st.info.update(count=len(all_pubs), pages=pages)
    st.done()

    # ---------------------------------------------------------------- (c) live gap filled by history
    st = Step("c.live-gap")
    start = len(sub_b.delivered)
    sub_b.drop_next = 3  # lose three live frames on purpose; B's history page size is 2 -> 2 pages
    sent = []
    for i in range(6):
        sent.append(await a.publish(ch, {"n": f"gap{i}"}))
    await b.wait_until(lambda: sub_b.offset is not None and sub_b.offset >= sent[-1]["offset"] and not sub_b.recovering,
                       what="B to catch up after the gap")
    got = sub_b.delivered[start:]
    st.eq([m["data"]["n"] for m in got], [f"gap{i}" for i in range(6)], "delivered exactly once, in order")
    st.eq(offsets(got), [x["offset"] for x in sent], "offsets")
    st.eq(sub_b.dropped, [x["offset"] for x in sent[:3]], "the frames the client dropped on purpose")
    st.eq(len(sub_b.gaps), 1, "one gap detected")
    if sub_b.gaps:
        g = sub_b.gaps[0]
        st.eq(g["filled"], 3, "gap filled by history with the 3 dropped")
        st.check(g["pages"] >= 2, f"history was paged with since ({g['pages']} pages)")
        st.info["gap"] = g
    st.eq(sub_b.unrecovered, [], "no unrecoverable event")
    st.check(contiguous(offsets(sub_b.delivered)), "everything B delivered is contiguous")
    tracker_clean(st, b, ch)
    st.done()

    # ---------------------------------------------------------------- (d) error replies
    c = ChorusClient(url, tokens["a"], "C")
    await c.connect()

    # A separate connection: section 3 closes a connection after 10 faulty frames.
    d = ChorusClient(url, tokens["b"], "D")
    await d.connect()
    st = Step("d.bad-frame")
    mark = len(d.frames)
    await d.send_raw("this is not json")
    f = await d.next_frame(lambda f: f.get("event") == "error", mark)
    st.eq((f.get("data") or {}).get("code"), "BAD_FRAME", "non-JSON text -> BAD_FRAME")
    st.check("id" not in f, "error for a frame without id carries no id")
    st.info["notJson"] = f
    mark = len(d.frames)
    await d.send_raw('["event","subscribe"]')
    f = await d.next_frame(lambda f: f.get("event") == "error", mark)
    st.eq((f.get("data") or {}).get("code"), "BAD_FRAME", "JSON that is not an object -> BAD_FRAME")
    mark = len(d.frames)
    await d.send_raw(json.dumps({"event": "ping", "id": 7}))
    f = await d.next_frame(lambda f: f.get("event") == "error", mark)
    st.eq((f.get("data") or {}).get("code"), "BAD_FRAME", "non-string id -> BAD_FRAME")
    mark = len(d.frames)
    await d.send_raw(b'{"event":"ping"}')
    f = await d.next_frame(lambda f: f.get("event") == "error", mark)
    st.eq((f.get("data") or {}).get("code"), "BAD_FRAME", "binary message -> BAD_FRAME")
    st.done()

    st = Step("d.abuse-limit")
    # Section 3: 10 faulty frames within 10000 ms -> close 1008. D already sent 4.
    for _ in range(5):
        await d.send_raw("{bad")
    r = await d.request("ping")
    st.eq(r, {"event": "ack", "id": r.get("id"), "data": {}}, "still open after 9 faulty frames")
    await d.send_raw("{bad")
    try:
        await d.wait_until(lambda: d.close_code is not None, what="close after the 10th faulty frame")
    except ChorusError as err:
        st.check(False, str(err))
    st.eq(d.close_code, 1008, "close code after 10 faulty frames")
    errors = [f for f in d.frames if f.get("event") == "error"]
    # The doc does not say whether the 10th faulty frame is answered before the close.
    st.check(len(errors) >= 9, f"the first 9 faulty frames got error replies ({len(errors)})")
    st.info["errorReplies"] = len(errors)
    st.info["closeReason"] = d.close_reason
    st.done()

    st = Step("d.unknown-event")
    r = await c.request("no-such-event", {"x": 1})
    st.eq(r.get("event"), "error", "reply event")
    st.eq((r.get("data") or {}).get("code"), "UNKNOWN_EVENT", "unknown event with id -> UNKNOWN_EVENT")
    mark = len(c.frames)
    await c.send_raw(json.dumps({"event": "no-such-event-2"}))
    f = await c.next_frame(lambda f: f.get("event") == "error", mark)
    st.eq((f.get("data") or {}).get("code"), "UNKNOWN_EVENT", "unknown event without id -> UNKNOWN_EVENT")
    st.eq((f.get("data") or {}).get("event"), "no-such-event-2", "error without id names the failed event")
    st.check("id" not in f, "no id on that error")
    r = await c.request("subscribe", {"channel": "chat:bad channel!"})
    st.eq((r.get("data") or {}).get("code"), "BAD_CHANNEL", "invalid channel name -> BAD_CHANNEL")
    r = await c.request("subscribe", "not-an-object")
    st.eq((r.get("data") or {}).get("code"), "BAD_REQUEST", "subscribe with non-object data -> BAD_REQUEST")
    # PROTOCOL.md section 9 does not say whether a missing channel is a "wrong shape" (BAD_REQUEST)
    # or an "invalid channel name" (BAD_CHANNEL); accept both and report which one the server chose.
    r = await c.request("subscribe", {"nochannel": True})
    code = (r.get("data") or {}).get("code")
    st.check(code in ("BAD_REQUEST", "BAD_CHANNEL"), f"subscribe without channel -> BAD_REQUEST or BAD_CHANNEL, got {code!r}")
    st.info["missingChannelCode"] = code
    st.done()

    st = Step("d.wrong-epoch")
    mark = len(c.frames)
    ack = await c.subscribe(ch, since={"offset": 0, "epoch": "not-the-epoch"})
    st.eq(ack.get("recovered"), False, "since with a wrong epoch -> recovered:false")
    st.eq(ack.get("epoch"), pos["epoch"], "ack carries the real epoch")
    st.eq(ack.get("offset"), sub_b.offset, "ack offset is the stream top")
    gap_msgs = [f for f in c.frames[mark:] if f.get("event") == "message" and (f.get("data") or {}).get("channel") == ch]
    st.eq(gap_msgs, [], "no message of the gap is sent")
    st.eq(len(c.subs[ch].unrecovered), 1, "client reports 'reload state'")
    try:
        await c.history(ch, since={"offset": 0, "epoch": "not-the-epoch"})
        st.check(False, "history with a wrong epoch should fail")
    except ChorusError as err:
        st.eq(err.code, "UNRECOVERABLE_POSITION", "history with a wrong epoch")
    r = await c.request("subscribe", {"channel": ch, "since": {"offset": 0, "epoch": "x"}})
    st.eq((r.get("data") or {}).get("code"), "ALREADY_SUBSCRIBED", "second subscribe -> ALREADY_SUBSCRIBED")
    await c.unsubscribe(ch)
    r = await c.request("unsubscribe", {"channel": ch})
    st.eq((r.get("data") or {}).get("code"), "NOT_SUBSCRIBED", "unsubscribe twice -> NOT_SUBSCRIBED")
    # A position ahead of the stream -> also recovered:false (5.1).
    ack = await c.subscribe(ch, since={"offset": sub_b.offset + 50, "epoch": pos["epoch"]})
    st.eq(ack.get("recovered"), False, "since ahead of the stream -> recovered:false")
    st.eq(ack.get("offset"), sub_b.offset, "ahead-of-stream ack offset is the stream top")
    st.done()

    # ---------------------------------------------------------------- misc: batching, ping, header auth
    st = Step("e.batching-and-ping")
    i1, i2 = c.new_id(), c.new_id()
    mark = len(c.frames)
    await c.send_raw(json.dumps({"event": "ping", "id": i1}) + "\n" + json.dumps({"event": "presence", "id": i2, "data": {"channel": ch}}))
    r1 = await c.next_frame(lambda f: f.get("id") == i1, mark)
    r2 = await c.next_frame(lambda f: f.get("id") == i2, mark)
    st.eq(r1, {"event": "ack", "id": i1, "data": {}}, "batched ping with id -> ack {}")
    st.eq(r2.get("event"), "ack", "batched presence -> ack")
    members = {m.get("user"): m for m in (r2.get("data") or {}).get("members", [])}
    st.check(users["a"] in members and users["b"] in members, f"presence lists both users: {list(members)}")
    if users["a"] in members:
        st.eq(members[users["a"]].get("connections"), 2, "user a has 2 connections subscribed (A and C)")
    mark = len(c.frames)
    await c.send_raw(json.dumps({"event": "ping"}))
    f = await c.next_frame(lambda f: f.get("event") in ("pong", "error"), mark)
    st.eq(f, {"event": "pong"}, "ping without id -> pong")
    st.done()

    st = Step("e.header-auth")
    h = ChorusClient(url, tokens["b"], "H")
    ch_ = await h.connect(header=True, query_token=cfg["badToken"])
    st.eq(ch_.get("user"), users["b"], "Authorization header wins over a bad ?token=")
    await h.close()
    status, body = handshake_status(url, cfg["badToken"])
    st.eq(status, 401, "bad token -> HTTP 401")
    st.eq((body or {}).get("error", {}).get("code"), "UNAUTHORIZED", "401 body code")
    status, body = handshake_status(url, None)
    st.eq(status, 401, "missing token -> HTTP 401")
    st.done()

    await c.close()
    await a.close()
    await b.close()
    st = Step("close")
    st.eq([a.close_code, b.close_code, c.close_code], [1000, 1000, 1000], "client-initiated close codes")
    st.done()


def handshake_status(url: str, token) -> tuple[int, dict | None]:
    """Section 1.2: a rejected upgrade is an HTTP response with a JSON error body."""
    u = urllib.parse.urlsplit(url)
    path = u.path + (f"?token={urllib.parse.quote(token, safe='')}" if token else "")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    conn.request("GET", path, headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                      "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    res = conn.getresponse()
    raw = res.read()
    conn.close()
    try:
        return res.status, json.loads(raw)
    except ValueError:
        return res.status, None


def run() -> int:
    raw = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()
    cfg = json.loads(raw)
    try:
        asyncio.run(asyncio.wait_for(main(cfg), cfg.get("timeoutSeconds", 30)))
    except Exception as exc:  # noqa: BLE001
        print(json.dumps({"step": "crash", "ok": False, "errors": [f"{type(exc).__name__}: {exc}"],
                          "trace": traceback.format_exc()}), flush=True)
        return 2
    if FAILURES:
        print(json.dumps({"step": "summary", "ok": False, "failures": FAILURES}), flush=True)
        return 1
    print(json.dumps({"step": "summary", "ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run())
