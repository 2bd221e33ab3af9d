"""Reusable test tools for tidegate and its users: processes, backends, fault-injecting instances."""
