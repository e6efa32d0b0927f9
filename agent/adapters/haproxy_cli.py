"""A client of HAProxy's runtime API (the "stats socket" CLI), over Trio.

One connection serves a whole sync: the client turns on interactive mode
(``prompt``), after which HAProxy answers each command line with its output
followed by the prompt ``"> "``, and keeps the connection open. Commands are
pipelined: up to 16 KiB of command lines are written in one go, then their
answers read, so 300 commands cost two or three round trips, not 300. HAProxy
runs them in order. The chunk bound keeps both sides from blocking on a full
buffer: the answers to a chunk of ``set``/``add``/``del`` lines are shorter than
the chunk, far below a socket buffer, and the ``show`` commands (long answers)
come in batches of a few short lines. ``quit`` ends the session.

An answer is the text before ``"\\n> "``. HAProxy's own outputs never hold a line
starting with ``"> "`` for the commands the agent sends (messages, CSV, the
servers-state table), so the split is exact for them.

Every failure becomes `BalancerError` naming the address: nothing listening,
permission denied on the socket, the connection closed early, or no answer within
`timeout` seconds for the whole session.
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import trio

from agent.core.errors import BalancerError
from agent.core.haproxy_text import RuntimeAddress, parse_runtime_address

__all__ = ["CliSession", "RuntimeAPI"]

_PROMPT = b"\n> "
_READ_SIZE = 65536
_CHUNK_BYTES = 16384


class CliSession:
    """One open, interactive connection; `run` may be called several times."""

    def __init__(self, stream: trio.abc.Stream, where: str) -> None:
        self._stream = stream
        self._where = where
        self._buffer = bytearray()

    async def run(self, commands: Sequence[str]) -> list[str]:
        """Send `commands` (pipelined) and return their answers, in order."""
        for command in commands:
            if "\n" in command:
                raise ValueError(f"a command is one line: {command!r}")
        answers: list[str] = []
        for chunk in _chunks(commands):
            await self._send(("\n".join(chunk) + "\n").encode())
            for _ in chunk:
                answers.append(await self._read_answer(len(answers), len(commands)))
        return answers

    async def _send(self, payload: bytes) -> None:
        try:
            await self._stream.send_all(payload)
        except (OSError, trio.BrokenResourceError) as exc:
            raise BalancerError(f"HAProxy runtime API at {self._where}: sending failed: "
                                f"{_why(exc)}") from exc

    async def _read_answer(self, index: int = 0, total: int = 1) -> str:
        while True:
            end = self._buffer.find(_PROMPT)
            if end >= 0:
                answer = bytes(self._buffer[:end])
                del self._buffer[: end + len(_PROMPT)]
                return answer.decode("utf-8", "replace")
            try:
                chunk = await self._stream.receive_some(_READ_SIZE)
            except (OSError, trio.BrokenResourceError) as exc:
                raise BalancerError(f"HAProxy runtime API at {self._where}: reading failed: "
                                    f"{_why(exc)}") from exc
            if not chunk:
                raise BalancerError(
                    f"HAProxy runtime API at {self._where} closed the connection after "
                    f"{index} of {total} answers"
                )
            self._buffer += chunk


class RuntimeAPI:
    """Where an HAProxy runtime API listens, and how long a session may take."""

    def __init__(self, address: RuntimeAddress | str, *, timeout: float = 5.0) -> None:
        self.address = parse_runtime_address(address) if isinstance(address, str) else address
        self.timeout = timeout

    def __str__(self) -> str:
        return str(self.address)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[CliSession]:
        """An interactive session, closed (``quit``) on exit; bounded by `timeout`."""
        where = str(self.address)
        with trio.move_on_after(self.timeout) as scope:
            stream = await self._connect(where)
            try:
                cli = CliSession(stream, where)
                await stream.send_all(b"prompt\n")
                await cli._read_answer()
                yield cli
                with contextlib.suppress(OSError, trio.BrokenResourceError):
                    await stream.send_all(b"quit\n")
            except (OSError, trio.BrokenResourceError) as exc:
                raise BalancerError(f"HAProxy runtime API at {where}: {_why(exc)}") from exc
            finally:
                await stream.aclose()
        if scope.cancelled_caught:
            raise BalancerError(
                f"HAProxy runtime API at {where} did not answer within {self.timeout:g} s"
            )

    async def run(self, commands: Sequence[str]) -> list[str]:
        """One session running `commands`: a convenience for single batches."""
        async with self.session() as cli:
            return await cli.run(commands)

    async def _connect(self, where: str) -> trio.abc.Stream:
        try:
            if self.address.path is not None:
                return await trio.open_unix_socket(self.address.path)
            assert self.address.host is not None and self.address.port is not None
            return await trio.open_tcp_stream(self.address.host, self.address.port)
        except OSError as exc:
            raise BalancerError(
                f"HAProxy runtime API at {where} is unreachable: {_why(exc)}"
            ) from exc


def _chunks(commands: Sequence[str]) -> list[list[str]]:
    chunks: list[list[str]] = []
    size = _CHUNK_BYTES
    for command in commands:
        if size + len(command) + 1 > _CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(command)
        size += len(command) + 1
    return chunks


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
