"""The edge server: collector, store, rules and the per-client API.

Nothing is imported here: `iotedge keys ...` and `iotedge store ...` load only the store or
the keys, not the web stack (the app is ``iotedge.edge.app.create_app``).
"""
