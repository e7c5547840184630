"""Ailurus broker: the asynchronous layer that glues protocol/ and storage/ together.

``broker.server`` runs listeners, the admin API and background jobs in anyio task
groups; ``broker.net.connection`` drives the sans-IO codec per client connection;
``broker.net.dispatch`` routes decoded requests to ``broker.handlers``.
"""
