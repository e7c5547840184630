"""Security: TLS listeners, SASL authentication, users, ACLs, failed-login limits.

``settings`` (what the configuration parses), ``session`` (one connection's
protocol, SASL progress and principal), ``service`` (the process-wide service built
from the settings), ``sasl`` (mechanisms and the per-connection state machine),
``credentials`` (the user store), ``acl`` (the authorizer), ``acl_binding``
(Kafka's ACL model), ``acl_store`` (the ACLs of the ACL APIs and a single node's
file), ``ratelimit`` (failed logins), ``admin_auth`` (the admin API's token),
``tls`` (stdlib ssl contexts). Everything here except ``tls`` and the file store's
writes (in a worker thread) is pure (no sockets, no event loop). Nothing here
imports the network layer; the authorisation middleware built from these pieces is
:mod:`broker.authz`.
"""
