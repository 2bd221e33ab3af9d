"""The network-layer director in the manner of LVS: VS/NAT, VS/TUN and VS/DR.

Pure parts (tested exhaustively): checksum.py, frame.py, rewrite.py, arp.py, vnet.py,
tcp_state.py, conntable.py, director.py. Thin I/O around them: the packet socket engine
(userspace.py), the kernel IPVS engine (ipvs_engine.py), the real-server side (realserver.py,
decap.py) and the service the runtime starts (service.py).
"""
