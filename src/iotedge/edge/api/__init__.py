"""The edge's HTTP routers, one module per resource."""
