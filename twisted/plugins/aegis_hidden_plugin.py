"""``twistd aegis-hidden``: one line of wiring to :mod:`aegis_hidden.tap`."""

from twisted.application.service import ServiceMaker

aegis_hidden = ServiceMaker(
    "aegis-hidden",
    "aegis_hidden.tap",
    "A Tor/I2P-native privacy node (onion identity, post-quantum sessions).",
    "aegis-hidden",
)
