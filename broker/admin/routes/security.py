"""Admin routes for SASL users, shaped as Redpanda's admin API (what testcontainers'
Redpanda module and scripts written for ``rpk`` call):

- ``GET /v1/security/users``: the user names, a JSON list;
- ``POST /v1/security/users`` with ``{"username", "password", "algorithm"}``
  (``SCRAM-SHA-256`` when omitted, or ``SCRAM-SHA-512``): creates the user with
  that SCRAM credential (400 if it exists already, or for a bad name, password or
  algorithm);
- ``PUT /v1/security/users/{name}`` with ``{"password", "algorithm"}``: sets a new
  password (creating the user when it is new);
- ``DELETE /v1/security/users/{name}``: removes the user (404 if unknown).

They work on the same credentials as the SCRAM credential APIs: a single node's
users file (``<data-dir>/security/users.json``, what ``ailurus user`` manages; its
ACL rules are kept on a password change; writes fsynced in a worker thread), or in
cluster mode the cluster's credentials in etcd, so a user made through one
broker's admin API logs in on every broker. Like every non-public admin route
they need the admin token when one is set.
"""

from __future__ import annotations

import json

import structlog

from broker.admin.server import AdminView, HttpRequest, HttpResponse, RouteTable
from broker.security.credential_store import (
    CredentialStore,
    CredentialStoreError,
    check_password,
)
from broker.security.credentials import SCRAM_MECHANISMS, CredentialError

log = structlog.get_logger("broker.admin")

DEFAULT_ALGORITHM = "SCRAM-SHA-256"


def _store(view: AdminView) -> CredentialStore | None:
    return None if view.ctx is None else view.ctx.security.credentials


def _body(request: HttpRequest) -> dict[str, object] | str:
    """The JSON object of the body, or why it is not one."""
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return "the body is not JSON"
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    return body


def _credentials(body: dict[str, object]) -> tuple[str, str] | str:
    """(password, algorithm) from a body, or what is wrong with it."""
    password = body.get("password")
    algorithm = body.get("algorithm", DEFAULT_ALGORITHM)
    if not isinstance(password, str) or not password:
        return "a non-empty password is required"
    if not isinstance(algorithm, str) or algorithm.upper() not in SCRAM_MECHANISMS:
        return f"algorithm must be one of {', '.join(sorted(SCRAM_MECHANISMS))}"
    return password, algorithm.upper()


def _users(view: AdminView, request: HttpRequest) -> HttpResponse:
    store = _store(view)
    if store is None:
        return HttpResponse.error(503, "starting")
    return HttpResponse.json(store.user_names())


async def _set(
    store: CredentialStore, name: str, password: str, algorithm: str, *, create: bool
) -> HttpResponse:
    try:
        check_password(name, password, algorithm)
        saved = await store.set_password(name, password, algorithm, create=create)
    except CredentialError as e:
        return HttpResponse.error(400, str(e))
    except CredentialStoreError as e:
        log.error("user_store_write_failed", user=name, error=str(e))
        return HttpResponse.error(500, "the user store cannot be written")
    if not saved:
        return HttpResponse.error(400, f"user {name} already exists")
    log.info("user_saved", user=name, mechanism=algorithm, created=create)
    return HttpResponse.json({"username": name, "algorithm": algorithm})


async def _create(view: AdminView, request: HttpRequest) -> HttpResponse:
    store = _store(view)
    if store is None:
        return HttpResponse.error(503, "starting")
    body = _body(request)
    if isinstance(body, str):
        return HttpResponse.error(400, body)
    name = body.get("username")
    if not isinstance(name, str):
        return HttpResponse.error(400, "a username is required")
    creds = _credentials(body)
    if isinstance(creds, str):
        return HttpResponse.error(400, creds)
    return await _set(store, name, *creds, create=True)


async def _update(view: AdminView, request: HttpRequest) -> HttpResponse:
    store = _store(view)
    if store is None:
        return HttpResponse.error(503, "starting")
    body = _body(request)
    if isinstance(body, str):
        return HttpResponse.error(400, body)
    creds = _credentials(body)
    if isinstance(creds, str):
        return HttpResponse.error(400, creds)
    return await _set(store, request.params["name"], *creds, create=False)


async def _delete(view: AdminView, request: HttpRequest) -> HttpResponse:
    store = _store(view)
    if store is None:
        return HttpResponse.error(503, "starting")
    name = request.params["name"]
    try:
        deleted = await store.delete_user(name)
    except CredentialStoreError as e:
        log.error("user_store_write_failed", user=name, error=str(e))
        return HttpResponse.error(500, "the user store cannot be written")
    if not deleted:
        return HttpResponse.error(404, f"no user {name}")
    log.info("user_deleted", user=name)
    return HttpResponse.json({"username": name})


def register(routes: RouteTable) -> None:
    """Add this module's routes to ``routes``."""
    routes.add("GET", "/v1/security/users", _users)
    routes.add("POST", "/v1/security/users", _create)
    routes.add("PUT", "/v1/security/users/{name}", _update)
    routes.add("DELETE", "/v1/security/users/{name}", _delete)
