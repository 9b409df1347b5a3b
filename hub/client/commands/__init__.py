"""One module per ``spime`` command group; see :mod:`hub.client.cli`."""
