"""The reference remote REST API in front of the central SQL database.

``create_app`` (in ``craftsync.server.app``) builds the Flask application; ``craftsync server``
serves it with waitress. The wire format it shares with the sync client lives in
``craftsync.contract``, which imports nothing of the server.
"""
