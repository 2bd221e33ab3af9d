"""Benchmarks beside the systems users would pick instead (nginx, HAProxy), for `tidegate bench`
and the scripts in bench/. Not a layer of the product: it starts processes and reads /proc."""
