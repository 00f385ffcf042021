"""The baseline for the WebSocket benchmark: a minimal broadcast server.

Plain Starlette WebSocket on uvicorn (the same server stack as Huddle), no auth, no
subscriptions: a socket that sends text is the sender, and each frame it sends is
relayed — encoded once, the same ``str`` object — to every other connected socket.

    python bench/ws_minimal_server.py --port 8765
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

clients: set[WebSocket] = set()


async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    clients.add(websocket)
    try:
        while True:
            frame = await websocket.receive_text()
            for client in list(clients):
                if client is not websocket:
                    try:
                        await client.send_text(frame)
                    except Exception:
                        clients.discard(client)
    except WebSocketDisconnect:
        pass
    finally:
        clients.discard(websocket)


app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
