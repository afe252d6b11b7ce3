Python 3.10, 3.11, 3.12 and 3.13 are supported (Twisted 22.10.0 and later; ``tomli`` on 3.10), and the package ships an API reference built with pydoctor (``tox -e docs``).
