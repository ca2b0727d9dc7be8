"""The edge server: collector, store, rules, API and its own metrics."""
