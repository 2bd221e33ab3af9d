"""`workers = N` for a listening section ([[http]], [[tcp]], [dns]): N processes serve one address
on SO_REUSEPORT sockets while the main process keeps the pools, health checks, admin API and
reloads, and shows the workers' figures as sums.

parent.py runs in the main process (the section's service there), child.py is a worker process,
wire.py is what they tell each other, and kind.py is what a section's kind supplies: how to bind
one worker's sockets, how to make its service in the worker, and how its own figures add up.
"""
