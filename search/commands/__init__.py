"""Sub-commands of the ``pers-search`` command line that live outside ``search/cli.py``.

Each module offers an ``add_*_parser(subparsers)`` function that ``search.cli.build_parser``
calls; the handlers are set with ``set_defaults(handler=...)`` as the built-in commands do, and
``trains=True`` marks a command that trains or generates (the console script then runs it on the
allocator of :mod:`runners.allocator`).
"""
