"""The CLI's client of the broker's admin HTTP API (JSON over HTTP, bearer token).

Every failure becomes one :class:`AdminApiError` line: an HTTP error carries the
broker's ``error`` text (a 401 also says how to pass the token); a URL that answers
with something other than HTTP (a Kafka port, say) is named as not speaking the
admin API.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Final

from broker.client.errors import ClientError

ADMIN_AUTH_HINT: Final = (
    "pass the broker's admin token with -X admin.token=TOKEN or AILURUS_ADMIN_TOKEN"
)


class AdminApiError(ClientError):
    """An admin API call failed; the message is one line."""


def admin_request(
    admin_url: str,
    method: str,
    path: str,
    body: object | None = None,
    *,
    token: str | None = None,
    timeout: float = 300,
) -> object:
    """One admin API call; returns the decoded JSON body (None for an empty one).

    Needs no click context, so it is safe in a worker thread.
    """
    url = admin_url.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise AdminApiError(f"--admin-url {admin_url!r} is not an http(s) URL")
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url, data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        try:
            found = json.loads(exc.read())
            message = (
                found.get("error", exc.reason)
                if isinstance(found, dict)
                else exc.reason
            )
        except ValueError:
            message = exc.reason
        hint = f"; {ADMIN_AUTH_HINT}" if exc.code == 401 else ""
        raise AdminApiError(f"admin API {exc.code}: {message}{hint}") from None
    except urllib.error.URLError as exc:
        raise AdminApiError(f"admin API {url} unreachable: {exc.reason}") from None
    except (http.client.HTTPException, ConnectionResetError) as exc:
        raise AdminApiError(
            f"{admin_url} does not speak the admin HTTP API ({type(exc).__name__}); "
            "is it a Kafka port? set --admin-url or -X admin.hosts= to the admin "
            "address (default port 9644)"
        ) from None
    except TimeoutError:
        raise AdminApiError(
            f"admin API {url}: no response within {timeout:g}s"
        ) from None
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise AdminApiError(
            f"{admin_url} answered with something other than JSON; "
            "is it the broker's admin API?"
        ) from None
