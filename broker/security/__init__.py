"""Security: TLS listeners, SASL authentication, users, ACLs, failed-login limits.

``sasl`` (mechanisms and the per-connection state machine), ``credentials`` (the
user store), ``acl`` (the authorizer), ``ratelimit`` (failed logins), ``tls`` (stdlib
ssl contexts). Everything here except ``tls`` is pure (no sockets, no event loop).
"""
