"""Fixtures for integration tests: real tor / i2pd processes on 127.0.0.1."""
