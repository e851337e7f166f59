"""Hybrid post-quantum sessions between nodes (X-Wing handshake, AEAD cells)."""
