"""Fakes of every interface, and harnesses for private Tor and I2P networks.

Each module adds its exports below.
"""
