"""``i2p:`` endpoint strings (``clientFromString`` / ``serverFromString``): wiring only.

The parsing lives in :mod:`aegis_hidden.i2p._strports`; see docs/i2p.md.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import (
    IStreamClientEndpoint,
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class I2PClientParser:
    prefix = "i2p"

    def parseStreamClient(self, reactor: Any, *args: object, **kwargs: object
                          ) -> IStreamClientEndpoint:
        from aegis_hidden.i2p._strports import client_from_string

        return client_from_string(reactor, *map(str, args),
                                  **{k: str(v) for k, v in kwargs.items()})


@implementer(IPlugin, IStreamServerEndpointStringParser)
class I2PServerParser:
    prefix = "i2p"

    def parseStreamServer(self, reactor: Any, *args: object, **kwargs: object
                          ) -> IStreamServerEndpoint:
        from aegis_hidden.i2p._strports import server_from_string

        return server_from_string(reactor, *map(str, args),
                                  **{k: str(v) for k, v in kwargs.items()})


i2p_client_parser = I2PClientParser()
i2p_server_parser = I2PServerParser()
