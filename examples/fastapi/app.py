"""
A FastAPI backend for Chorus: session-cookie login, the connect proxy (who is this cookie, and
which rooms do they join), the subscribe proxy (members only), an RPC that saves a chat message
and publishes it through Chorus's HTTP API, and a webhook receiver that verifies signatures.

Run it next to a Chorus node started with ./chorus.json:

    CHORUS_URL=http://127.0.0.1:8080 CHORUS_API_KEY=example-api-key-change-me \\
    WEBHOOK_SECRET=example-webhook-secret-change-me python3 app.py      # listens on 127.0.0.1:8000

Storage is in memory to keep the example short; a real app keeps users, sessions and messages
in its database.
"""
import hashlib
import hmac
import json
import os
import secrets
import socket
import sys
import time

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

CHORUS_URL = os.environ.get("CHORUS_URL", "http://127.0.0.1:8080")
CHORUS_API_KEY = os.environ.get("CHORUS_API_KEY", "example-api-key-change-me")
WEBHOOK_SECRET = os.environ.get("WEBHOOK_SECRET", "example-webhook-secret-change-me").encode()
SESSION_TTL_S = 3600

USERS = {"ada": "ada-password", "bob": "bob-password"}
NAMES = {"ada": "Ada Lovelace", "bob": "Bob Kahn"}
ROOMS = {"general": {"ada", "bob"}, "ada-bob": {"ada", "bob"}, "ada-only": {"ada"}}

sessions: dict[str, tuple[str, float]] = {}  # session id -> (user, expires at, s since epoch)
messages: dict[str, list[dict]] = {room: [] for room in ROOMS}
hook_events: list[dict] = []  # webhook events received with a valid signature
seen_event_ids: set[str] = set()  # webhooks are at-least-once: de-duplicate by event id

app = FastAPI(title="Chorus example backend")
chorus = httpx.AsyncClient(base_url=CHORUS_URL, headers={"authorization": f"Bearer {CHORUS_API_KEY}"}, timeout=5.0)


def allow(result: dict) -> dict:
    return {"result": result}


def deny(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def rooms_of(user: str) -> list[str]:
    return sorted(room for room, members in ROOMS.items() if user in members)


def room_of(channel: str) -> str | None:
    return channel[len("chat:"):] if channel.startswith("chat:") else None


# ---- the app's own login: a session cookie --------------------------------------------------

@app.post("/login")
async def login(request: Request) -> Response:
    body = await request.json()
    user, password = body.get("user"), body.get("password")
    if not isinstance(user, str) or not hmac.compare_digest(USERS.get(user, "\0"), str(password)):
        return JSONResponse({"error": "bad user or password"}, status_code=401)
    session = secrets.token_urlsafe(24)
    sessions[session] = (user, time.time() + SESSION_TTL_S)
    response = JSONResponse({"user": user})
    response.set_cookie("session", session, httponly=True, samesite="lax", max_age=SESSION_TTL_S)
    return response


@app.post("/logout")
async def logout(request: Request) -> dict:
    sessions.pop(request.cookies.get("session", ""), None)
    return {}


def session_user(session: str | None) -> tuple[str, float] | None:
    found = sessions.get(session or "")
    if found is None or found[1] < time.time():
        return None
    return found


# ---- Chorus proxy endpoints ----------------------------------------------------------------

@app.post("/chorus/connect")
async def chorus_connect(request: Request) -> dict:
    """Chorus asks who a connecting client is: read our session cookie, answer with the user."""
    body = await request.json()
    found = session_user(body.get("cookies", {}).get("session"))
    if found is None:
        return deny("UNAUTHORIZED", "not logged in")
    user, expires = found
    return allow({
        "user": user,
        "info": {"name": NAMES[user]},
        "expiresAt": int(expires * 1000),  # ms since the epoch: Chorus asks /chorus/refresh before it
        "channels": [f"chat:{room}" for room in rooms_of(user)],  # joined at connect, no subscribe frames needed
    })


@app.post("/chorus/refresh")
async def chorus_refresh(request: Request) -> dict:
    """Extend a connection while the user is still logged in (no session here: extend by the TTL)."""
    body = await request.json()
    if body["user"] not in USERS:
        return deny("UNAUTHORIZED", "unknown user")
    return allow({"expiresAt": int((time.time() + SESSION_TTL_S) * 1000)})


@app.post("/chorus/subscribe")
async def chorus_subscribe(request: Request) -> dict:
    body = await request.json()
    room = room_of(body["channel"])
    if room is not None and body["user"] not in ROOMS.get(room, set()):
        return deny("PERMISSION_DENIED", f"not a member of {room}")
    return allow({})


@app.post("/chorus/rpc")
async def chorus_rpc(request: Request) -> dict:
    """Application events from clients (`client.emit(event, data)`); the result is the client's ack."""
    body = await request.json()
    user, event, data = body["user"], body["event"], body.get("data") or {}
    if event == "chat.send":
        room, text = data.get("room"), data.get("text")
        if not isinstance(text, str) or not 1 <= len(text) <= 2000:
            return deny("BAD_REQUEST", "text must be 1 to 2000 characters")
        if user not in ROOMS.get(room, set()):
            return deny("PERMISSION_DENIED", f"not a member of {room}")
        message = {"id": len(messages[room]) + 1, "room": room, "user": user, "name": NAMES[user], "text": text}
        messages[room].append(message)  # saved first: the database is the source of truth
        published = await chorus.post("/api/publish", json={"channel": f"chat:{room}", "data": message})
        published.raise_for_status()
        return allow({"id": message["id"], "offset": published.json().get("offset")})
    if event == "chat.history":
        room = data.get("room")
        if user not in ROOMS.get(room, set()):
            return deny("PERMISSION_DENIED", f"not a member of {room}")
        return allow({"messages": messages[room][-50:]})
    return deny("UNKNOWN_EVENT", f"no such event: {event}")


# ---- webhooks ------------------------------------------------------------------------------

@app.post("/chorus/hooks")
async def chorus_hooks(request: Request) -> Response:
    raw = await request.body()  # the signature covers the raw bytes: check before parsing
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET, raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("x-chorus-signature", "")):
        return JSONResponse({"error": "bad signature"}, status_code=401)
    for event in json.loads(raw)["events"]:
        if event["id"] in seen_event_ids:
            continue
        seen_event_ids.add(event["id"])
        hook_events.append(event)
    return Response(status_code=204)


# ---- for the example's test and for curious humans ----------------------------------------

@app.get("/messages/{room}")
async def get_messages(room: str) -> list:
    return messages.get(room, [])


@app.get("/hook-events")
async def get_hook_events() -> list:
    return hook_events


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # PORT=0: any free port, reported on stdout
    sock.listen(128)  # connections made from now on wait for uvicorn to accept them
    print(json.dumps({"listening": sock.getsockname()[1]}), flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=os.environ.get("LOG_LEVEL", "warning")))
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
