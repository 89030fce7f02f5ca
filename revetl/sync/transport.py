"""How `Http` puts requests on the wire: aiohttp by default, httpx on a given transport (unit tests).

Why aiohttp under httpx: httpx's own connection pool (httpcore) costs about 1.75 ms of CPU per
request and stops scaling past a handful of requests in flight (encode/httpx#3215): two clients of
4 connections peaked at 570 requests/s against the Braze emulator here. The same httpx requests sent
through an aiohttp transport cost 0.8 ms and reached 1,230 requests/s, aiohttp alone 0.34 ms and
1,850 requests/s (measured 2026-11-23, 75-object bodies, 8 in flight). So `Http` sends with aiohttp
and hands destinations `httpx.Response`s; given an httpx transport (unit tests' MockTransport) it
sends through httpx instead. Both senders answer alike and raise the same httpx errors.

Secrets live only in the default headers handed to the senders; URLs never carry credentials.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Protocol

import aiohttp
import certifi
import httpx
import yarl

__all__ = ["AiohttpSender", "Body", "Form", "HttpxSender", "Params", "Sender"]

Body = bytes | None
Params = Mapping[str, str] | None
Form = Mapping[str, str] | None  # sent form-encoded (OAuth token requests)


class Sender(Protocol):
    headers: dict[str, str]  # the defaults every request carries (a refreshed token is set here)

    async def send(self, method: str, url: str, content: Body, params: Params, data: Form,
                   headers: Mapping[str, str] | None) -> httpx.Response: ...

    async def aclose(self) -> None: ...


class AiohttpSender:
    """Requests over one aiohttp session, answered as `httpx.Response`s with the whole body read.

    aiohttp's errors become the httpx errors they mean, so retries read both senders alike: refused
    -> ConnectError, closed without an answer -> RemoteProtocolError, other socket trouble ->
    ReadError, no answer in time -> ReadTimeout. Proxies come from the environment (HTTPS_PROXY,
    NO_PROXY), looked up once per host; ~/.netrc is never read (aiohttp's `trust_env` reads it on
    every request: a quarter of the CPU a request cost).
    """

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float, connections: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.timeout = timeout
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}
        self._targets: dict[tuple[str, str], tuple[yarl.URL, str | None, httpx.Request]] = {}

    def _open(self) -> aiohttp.ClientSession:  # inside the running loop, on first use
        context = ssl.create_default_context(cafile=certifi.where())
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections, ssl=context),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )
        return self._session

    def _target(self, method: str, url: str, params: Params) -> tuple[yarl.URL, str | None, httpx.Request]:
        """The parsed URL, its proxy and the `httpx.Request` answers carry (read-only, so shared): parsed
        once per method and URL, since a sync sends thousands of requests to the same few."""
        known = self._targets.get((method, url)) if params is None else None
        if known is None:
            full = self.base_url + url if url.startswith("/") else url
            target = yarl.URL(full)
            known = target, self._proxy(target), httpx.Request(method, full, params=params)
            if params is None and len(self._targets) < 256:  # per-contact URLs are many: keep a few
                self._targets[(method, url)] = known
        return known

    def _proxy(self, url: yarl.URL) -> str | None:
        origin = f"{url.scheme}://{url.host}"
        if origin not in self._proxies:
            bypass = not url.host or urllib.request.proxy_bypass_environment(url.host)
            self._proxies[origin] = None if bypass else urllib.request.getproxies_environment().get(url.scheme)
        return self._proxies[origin]

    async def send(self, method: str, url: str, content: Body, params: Params, data: Form,
                   headers: Mapping[str, str] | None) -> httpx.Response:
        session = self._session or self._open()
        target, proxy, request = self._target(method, url, params)
        try:
            async with session.request(method, target, params=params, data=content if data is None else dict(data),
                                       headers={**self.headers, **headers} if headers else self.headers,
                                       allow_redirects=False, proxy=proxy) as answer:
                body = await answer.read()
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(f"no answer within {self.timeout} s", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request) from exc
        except (aiohttp.ClientOSError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        return httpx.Response(answer.status, headers=answer.raw_headers, content=body, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxSender:
    """The same through an `httpx.AsyncClient` on a given transport (unit tests' MockTransport)."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float,
                 transport: httpx.AsyncBaseTransport) -> None:
        self.headers = dict(headers)
        self._client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(timeout, pool=None),
                                         transport=transport)

    async def send(self, method: str, url: str, content: Body, params: Params, data: Form,
                   headers: Mapping[str, str] | None) -> httpx.Response:
        return await self._client.request(method, url, content=content, params=params, data=data,
                                          headers={**self.headers, **(headers or {})})

    async def aclose(self) -> None:
        await self._client.aclose()
