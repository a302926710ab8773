"""Sub-commands of the ``pers-search`` command line that live outside ``search/cli.py``.

Each module offers an ``add_*_parser(subparsers)`` function that ``search.cli.build_parser``
calls; the handlers are set with ``set_defaults(handler=...)`` as the built-in commands do.
"""
