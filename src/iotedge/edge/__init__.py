"""The edge server: collector, store, rules, notifications and the HTTP API."""
