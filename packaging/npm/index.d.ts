/** A node:sqlite `DatabaseSync` (Node 22.13+, opened with `{ allowExtension: true }`). */
export interface NodeSqliteDatabase {
  readonly isOpen?: boolean;
  enableLoadExtension(allow: boolean): void;
  loadExtension(path: string, entryPoint?: string): void;
}

/** A better-sqlite3 `Database`. */
export interface BetterSqlite3Database {
  loadExtension(path: string, entryPoint?: string): unknown;
}

/** The absolute path of the bundled `libreplica.so` (linux-x64). */
export function getLoadablePath(): string;

/**
 * Loads libreplica into `db`: its database is replicated from its next commit, and every
 * database opened afterwards in this process too, to `REPLICA_URL`. Throws when a
 * node:sqlite database was opened without `allowExtension: true`, or is closed.
 */
export function load(db: NodeSqliteDatabase | BetterSqlite3Database): void;

