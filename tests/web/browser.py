"""Headless Chromium driven over the DevTools protocol (CDP), with trio-websocket.

Just enough of CDP for the dashboard test: open a page, evaluate JavaScript,
collect console/log errors. The browser runs with a fresh profile in a temporary
directory and is terminated (by its pid, which we own) on exit.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trio_websocket

from .http import request

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
]


def available() -> bool:
    return os.path.exists(CHROMIUM)


class Page:
    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self.errors: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self._ws.send_message(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await self._ws.get_message())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._note(message)

    def _note(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(f"exception: {details.get('text')} {details.get('exception', {}).get('description', '')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log[{entry.get('source')}]: {entry.get('text')} {entry.get('url', '')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(f"console.error: {params.get('args')}")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")


@asynccontextmanager
async def chromium_page(url: str, *, timeout: float = 30.0) -> AsyncIterator[Page]:
    profile = Path(tempfile.mkdtemp(prefix="da-chromium-"))
    process = await trio.lowlevel.open_process(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(timeout):
            port_file = profile / "DevToolsActivePort"
            while not (port_file.exists() and port_file.read_text().strip()):
                if process.poll() is not None:
                    raise RuntimeError(f"chromium exited with {process.returncode}")
                await trio.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            target = None
            while target is None:
                targets = (await request(f"http://127.0.0.1:{port}/json/list")).json()
                target = next((t for t in targets if t.get("type") == "page"), None)
                if target is None:
                    await trio.sleep(0.05)
        async with trio_websocket.open_websocket_url(
            target["webSocketDebuggerUrl"], max_message_size=64 * 1024 * 1024
        ) as ws:
            page = Page(ws)
            with trio.fail_after(timeout):
                await page.call("Runtime.enable")
                await page.call("Log.enable")
            yield page
    finally:
        with trio.CancelScope(shield=True):
            if process.poll() is None:
                process.terminate()
                with trio.move_on_after(10):
                    await process.wait()
                if process.poll() is None:
                    process.kill()
                    await process.wait()
            shutil.rmtree(profile, ignore_errors=True)
