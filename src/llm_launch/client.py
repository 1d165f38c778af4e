"""A small HTTP client for the llm-launch API, used by the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx


class ApiError(Exception):
    """The server answered with an error; `message` is its `detail`."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message


class LaunchClient:
    def __init__(self, base_url: str, api_key: str | None, timeout: float = 30.0) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> LaunchClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The server's answer; ApiError when it cannot be reached or answers an error."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach {self._http.base_url}: {exc}") from exc
        if response.is_error:
            raise ApiError(response.status_code, _detail(response))
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def create_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/llm/model-endpoints", json=body)
        return result

    def update_endpoint(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", f"/v1/llm/model-endpoints/{name}", json=body)
        return result

    def list_endpoints(
        self, name: str | None = None, include_deleting: bool = False
    ) -> list[dict[str, Any]]:
        """The caller's endpoints; with `include_deleting`, also those whose teardown is
        still going on (status DELETE_IN_PROGRESS)."""
        params: dict[str, str] = {"name": name} if name else {}
        if include_deleting:
            params["include_deleting"] = "true"
        result = self._call("GET", "/v1/llm/model-endpoints", params=params or None)
        endpoints: list[dict[str, Any]] = result["model_endpoints"]
        return endpoints

    def get_endpoint(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/llm/model-endpoints/{name}")
        return result

    def endpoint_logs(self, name: str, group: int, rank: int, forwarder: bool, tail: int) -> str:
        params = {"group": group, "rank": rank, "forwarder": forwarder, "tail": tail}
        return self._send("GET", f"/v1/llm/model-endpoints/{name}/logs", params=params).text

    def follow_endpoint_logs(
        self, name: str, group: int, rank: int, forwarder: bool, tail: int
    ) -> Iterator[bytes]:
        """The log's last `tail` lines, then what the process writes, as the server streams
        it (`follow=true`), until the server ends the stream; ApiError before any line."""
        params = {"group": group, "rank": rank, "forwarder": forwarder, "tail": tail}
        params["follow"] = True
        path = f"/v1/llm/model-endpoints/{name}/logs"
        # No read timeout: a quiet log is not a failed server.
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    raise ApiError(response.status_code, _detail(response))
                yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise ApiError(0, f"the log stream from {self._http.base_url} broke: {exc}") from exc

    def delete_endpoint(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/v1/llm/model-endpoints/{name}")
        return result


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text
