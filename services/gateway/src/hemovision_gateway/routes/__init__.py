"""REST routers of the gateway, one module per area."""
