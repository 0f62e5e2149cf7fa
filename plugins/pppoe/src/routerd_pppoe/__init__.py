"""routerd PPPoE client plugin (``routerd-plugin-pppoe``)."""
