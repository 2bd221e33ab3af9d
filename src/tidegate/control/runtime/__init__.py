"""The running process: its runtime (process.py), its pools (pools.py) and the config sections it
runs, with what a reload starts, stops or changes (sections.py)."""
