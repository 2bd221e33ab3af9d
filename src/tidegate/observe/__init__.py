"""Figures per instance and pool: connections, IOPS, bytes in/out; Prometheus exposition."""
