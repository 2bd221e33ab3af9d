"""Shared state through etcd: the client and its JSON-gateway wire format, leases, the key layout,
the registry→pool plan (sync.py) and the service that runs it (service.py)."""
