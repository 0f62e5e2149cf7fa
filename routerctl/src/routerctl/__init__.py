"""routerctl: the command line for routerd daemons (see ``routerctl --help``).

Kept empty of imports so that ``routerctl --help`` and the common commands
start fast.
"""
