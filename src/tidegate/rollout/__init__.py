"""The rolling upgrade and instance registration: clients of the admin API and of the instances'
supervisors, used by `tidegate upgrade` and `tidegate serve`. Nothing here runs inside the gateway
process, so this package imports nothing of tidegate.control."""
