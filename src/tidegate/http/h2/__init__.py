"""HTTP/2 from clients (h2c with prior knowledge, and ALPN h2 over TLS), on the `h2` library."""
