"""libreplica: replicate WAL-mode SQLite databases to S3, R2 or a directory as
Litestream-compatible LTX files, from inside the process that writes them.

    import sqlite3, libreplica
    db = sqlite3.connect("app.db")
    libreplica.load(db)

See the package's README (its long description) for configuration and the CLI
(``python -m libreplica status|restore|verify``).
"""

import os

__all__ = ["loadable_path", "load", "ExtensionLoadingUnavailable"]

__version__ = "@VERSION@"


class ExtensionLoadingUnavailable(RuntimeError):
    """The connection's SQLite module cannot load extensions at all."""


def loadable_path():
    """The path of the extension inside this package (for hosts that load it themselves:
    ``sqlite3 -cmd '.load PATH'``, ``datasette --load-extension PATH``)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "libreplica.so")


_NO_LOADING = (
    "this Python's sqlite3 module cannot load extensions: {kind} has no "
    "enable_load_extension (python.org, pyenv, uv and conda builds only have it when "
    "compiled with --enable-loadable-sqlite-extensions). Use apsw instead, which always "
    "can: `pip install apsw`, then libreplica.load(apsw.Connection(...)); or run "
    "Debian's or Ubuntu's /usr/bin/python3, whose sqlite3 can"
)


def load(conn):
    """Loads the extension into ``conn``, a ``sqlite3.Connection`` or an ``apsw.Connection``.

    Once loaded, every database the process opens afterwards replicates (per REPLICA_URL or
    litestream.yml), and so does the database ``conn`` already has open. Loading again,
    into another connection, is harmless. Extension loading is switched off again
    afterwards, so SQL run on the connection cannot load libraries of its own. Returns
    ``conn``.
    """
    # apsw named these enableloadextension/loadextension before 3.42: both spellings are
    # tried so older apsw works too.
    enable = getattr(conn, "enable_load_extension", None) or getattr(
        conn, "enableloadextension", None
    )
    load_ext = getattr(conn, "load_extension", None) or getattr(
        conn, "loadextension", None
    )
    if enable is None or load_ext is None:
        kind = type(conn).__module__ + "." + type(conn).__qualname__
        if not hasattr(conn, "execute"):
            raise TypeError(
                "libreplica.load: expected a sqlite3.Connection or apsw.Connection, got "
                + kind
            )
        raise ExtensionLoadingUnavailable(_NO_LOADING.format(kind=kind))
    enable(True)
    try:
        load_ext(loadable_path())
    finally:
        enable(False)
    return conn
