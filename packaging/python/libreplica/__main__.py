"""``python -m libreplica status|restore|verify``: the everyday commands of a Litestream user
(``litestream databases``, ``litestream restore``), without a daemon. Each run loads the
extension into this process, which sees the same configuration as the app (REPLICA_URL,
litestream.yml); a database shows in ``replica_status()`` once a process opens it, so the
commands open the databases they are about.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

import libreplica

# What `status` shows without --all: enough to tell whether a database is safe and why not.
STATUS_COLUMNS = [
    "name",
    "state",
    "uploader",
    "replicated_txid",
    "lag_ms",
    "pending_bytes",
    "last_upload_at",
    "replica_url",
    "last_error",
]


class Host:
    """The SQLite binding the commands run through: the interpreter's sqlite3 when it can
    load extensions, else apsw (which always can)."""

    def __init__(self):
        import sqlite3

        if hasattr(sqlite3.Connection, "enable_load_extension"):
            self.module, self.errors = sqlite3, (sqlite3.Error,)
        else:
            try:
                import apsw
            except ImportError:
                libreplica.load(sqlite3.connect(":memory:"))  # raises the explanation
                raise
            self.module, self.errors = apsw, (apsw.Error,)
        # Loaded before any database is opened, so each one opened later replicates.
        self.boot = libreplica.load(self.connect(":memory:"))
        # Kept until the process ends: a database whose last connection closes leaves
        # replica_status().
        self.open = []

    def connect(self, path):
        if self.module.__name__ == "sqlite3":
            return self.module.connect(path, isolation_level=None)
        return self.module.Connection(path)

    def query(self, sql, params=(), conn=None):
        """The column names and rows of ``sql``."""
        cur = (conn or self.boot).cursor()
        cur.execute(sql, params)
        # Before the rows: apsw describes only a statement that has not finished.
        try:
            columns = [d[0] for d in cur.description or ()]
        except self.errors:
            columns = []  # a statement without rows, already finished (apsw)
        return columns, [tuple(r) for r in cur]

    def open_database(self, path):
        """Opens a database so this process replicates it (or stands by for the process
        that does) and it has a row in replica_status()."""
        conn = self.connect(path)
        # The first read is what registers it: an open alone may not touch the file.
        self.query("SELECT count(*) FROM sqlite_schema", conn=conn)
        self.open.append(conn)
        return conn


def is_url(text):
    return "://" in text or text.startswith("s3:")


def config_databases():
    """The ``dbs[].path`` of the litestream.yml the extension reads (found the way it finds
    it), or None without one. Only block-style YAML is read, which is how litestream.yml
    files are written; other forms need the databases named on the command line."""
    path = None
    config = os.environ.get("REPLICA_CONFIG")
    if config == "off":
        return None
    for candidate in (
        config,
        os.environ.get("LITESTREAM_CONFIG"),
        "config/litestream.yml",
        "/etc/litestream.yml",
    ):
        if candidate and os.path.isfile(candidate):
            path = candidate
            break
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    found, in_dbs, item_indent = [], False, None
    for line in lines:
        text = line.split(" #")[0].rstrip()
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        indent = len(text) - len(text.lstrip())
        if indent == 0:
            in_dbs = re.match(r"dbs\s*:\s*$", text) is not None
            item_indent = None
            continue
        if not in_dbs:
            continue
        m = re.match(r"(\s*)-\s+(.*)$", text)
        if m and (item_indent is None or len(m.group(1)) == item_indent):
            item_indent = len(m.group(1))
            key_indent, rest = item_indent + 2, m.group(2)
        elif item_indent is not None and indent == item_indent + 2:
            key_indent, rest = indent, text.strip()
        else:
            continue
        kv = re.match(r"path\s*:\s*(.+)$", rest)
        if kv and key_indent == item_indent + 2:
            value = kv.group(1).strip().strip("\"'")
            found.append(os.path.expandvars(value))
    return found


def show_value(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def print_table(columns, rows, out):
    cells = [[show_value(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    for row in [columns] + cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


def print_records(columns, rows, out):
    width = max(len(c) for c in columns)
    for n, row in enumerate(rows):
        if n:
            out.write("\n")
        for c, v in zip(columns, row):
            out.write(f"{c.ljust(width)}  {show_value(v)}\n")


def cmd_status(host, args):
    names = args.databases
    if not names:
        names = config_databases()
        if names is None:
            raise UsageError(
                "status: name the databases to show (python -m libreplica status app.db): "
                "there is no litestream.yml to list them, and REPLICA_URL applies to "
                "whichever databases a process opens"
            )
    absent, opened = [], []
    for name in names:
        if os.path.exists(name):
            host.open_database(name)
            opened.append(os.path.realpath(name))
        else:
            # Opening it would restore it from its replica (the boot-time restore): status
            # only looks.
            absent.append((name, "missing (not opened)"))
    columns, rows = host.query("SELECT * FROM replica_status()")
    if not columns:
        columns = list(STATUS_COLUMNS)
    if "path" in columns:
        shown = {os.path.realpath(r[columns.index("path")]) for r in rows}
        # A database the configuration does not replicate has no row: say so rather than
        # leave it out.
        absent += [(p, "not replicated here") for p in opened if p not in shown]
    rows += [
        tuple(
            {"name": os.path.basename(p), "path": os.path.abspath(p), "state": state}.get(c)
            for c in columns
        )
        for p, state in absent
    ]
    if args.json:
        json.dump([dict(zip(columns, r)) for r in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.all:
        print_records(columns, rows, sys.stdout)
    elif not rows:
        print("no replicated databases")
    else:
        keep = [columns.index(c) for c in STATUS_COLUMNS if c in columns]
        print_table(
            [columns[i] for i in keep], [[r[i] for i in keep] for r in rows], sys.stdout
        )
    return 0


def cmd_restore(host, args):
    if args.target is None:
        if is_url(args.source):
            raise UsageError("restore: name the file to write the replica into")
        args.target = args.source
    options = []
    if args.overwrite:
        options.append("overwrite")
    if args.quick:
        options.append("quick")
    if args.parallelism:
        options.append(f"parallelism={args.parallelism}")
    _, rows = host.query(
        "SELECT replica_restore(?, ?, ?, ?)",
        (args.source, args.target, args.time, ",".join(options) or None),
    )
    print(f"restored {args.target} from {args.source} at txid {rows[0][0]}")
    return 0


def cmd_verify(host, args):
    if is_url(args.source):
        # replica_verify drills a live database; of a replica alone, what can be checked is
        # that its newest state restores and passes the integrity check.
        scratch = tempfile.mkdtemp(prefix="libreplica-verify-")
        try:
            target = os.path.join(scratch, "verify.db")
            _, rows = host.query(
                "SELECT replica_restore(?, ?, NULL, NULL)", (args.source, target)
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        print(
            f"ok: {args.source} restores to txid {rows[0][0]} and passes integrity_check "
            "(name the database instead of its replica to compare with it)"
        )
        return 0
    if not os.path.exists(args.source):
        raise UsageError(f"verify: {args.source}: no such database")
    path = os.path.abspath(args.source)
    host.open_database(path)
    _, standby = host.query(
        "SELECT uploader, replica_url FROM replica_status() WHERE path = ? AND state = 'standby'",
        (path,),
    )
    if standby:
        # The drill reads the uploader's spool, which only that process may use.
        uploader, url = standby[0]
        raise Failure(
            f"verify: {os.path.basename(path)} is uploaded by another process "
            f"({uploader or 'running now'}): run SELECT replica_verify() there, or check "
            f"its replica alone: python -m libreplica verify {url}"
        )
    _, rows = host.query("SELECT replica_verify(?)", (path,))
    _, detail = host.query(
        "SELECT last_verify FROM replica_status() WHERE path = ?", (path,)
    )
    note = detail[0][0] if detail else f"txid {rows[0][0]}"
    print(f"{os.path.basename(path)}: {note}")
    return 0


class UsageError(Exception):
    """Exit status 2."""


class Failure(Exception):
    """Exit status 1, as an SQL error."""


def parser():
    p = argparse.ArgumentParser(
        prog="python -m libreplica",
        description="Status, restore and restore drills of libreplica's replicas. "
        "Configuration comes from REPLICA_URL or litestream.yml, as in the app.",
    )
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no messages from the extension on stderr"
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("status", help="replica_status() of the databases, as a table")
    s.add_argument(
        "databases", nargs="*", help="database files (default: those litestream.yml lists)"
    )
    s.add_argument("--all", action="store_true", help="every column, one block per database")
    s.add_argument("--json", action="store_true", help="every column, as JSON")
    r = sub.add_parser("restore", help="restore a database's replica into a new file")
    r.add_argument("source", help="a configured database (path or file name) or a replica URL")
    r.add_argument(
        "target",
        nargs="?",
        help="the file to write (default: the database itself, as `litestream restore` does)",
    )
    r.add_argument("--time", help="a txid or an RFC 3339 timestamp (default: the latest)")
    r.add_argument(
        "--overwrite", action="store_true", help="replace an existing database no one has open"
    )
    r.add_argument("--quick", action="store_true", help="quick_check instead of integrity_check")
    r.add_argument("--parallelism", type=int, help="downloads at once (default 8)")
    v = sub.add_parser("verify", help="a restore drill (replica_verify)")
    v.add_argument("source", help="a database file, or a replica URL")
    version = sub.add_parser("version", help="replica_version()")
    # -q after the command too; SUPPRESS keeps an absent one from undoing one given before.
    for command in (s, r, v, version):
        command.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.quiet:
        # Read by the extension when it loads: its summary and notices stay off stderr.
        os.environ["REPLICA_LOG"] = "off"
    try:
        host = Host()
    except libreplica.ExtensionLoadingUnavailable as e:
        print(f"libreplica: {e}", file=sys.stderr)
        return 1
    try:
        if args.command == "version":
            print(host.query("SELECT replica_version()")[1][0][0])
            return 0
        return {"status": cmd_status, "restore": cmd_restore, "verify": cmd_verify}[
            args.command
        ](host, args)
    except UsageError as e:
        print(f"libreplica: {e}", file=sys.stderr)
        return 2
    except Failure as e:
        print(f"libreplica: {e}", file=sys.stderr)
        return 1
    except host.errors as e:
        hint = " (--overwrite)" if "'overwrite'" in str(e) else ""
        print(f"libreplica: {e}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
