"""The control plane: runtime, registry of pools, admin API, rolling upgrade orchestration."""
