"use strict";
// The loader for the libreplica SQLite extension bundled in lib/. The package ships only
// the linux-x64 build (package.json's os and cpu keep npm from installing it elsewhere,
// unless forced; getLoadablePath says so then rather than letting dlopen fail obscurely).

const path = require("node:path");
const fs = require("node:fs");

const NOT_ALLOWED =
  "libreplica: this node:sqlite database was opened without allowExtension, so no " +
  "extension can be loaded into it; open it with " +
  "new DatabaseSync(path, { allowExtension: true }) and call load(db) again";

function getLoadablePath() {
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new Error(
      `libreplica: this package carries the linux-x64 extension only, not one for ${process.platform}-${process.arch}`,
    );
  }
  const file = path.join(__dirname, "lib", "libreplica.so");
  if (!fs.existsSync(file)) {
    throw new Error(`libreplica: ${file} is missing; reinstall the package`);
  }
  return file;
}

// node:sqlite's DatabaseSync is told apart by enableLoadExtension, which better-sqlite3
// lacks (it always allows loading): duck typing rather than instanceof, so that requiring
// this package never imports node:sqlite (experimental in Node 22, with a warning).
function load(db) {
  if (db === null || typeof db !== "object" || typeof db.loadExtension !== "function") {
    throw new TypeError(
      "libreplica.load(db) expects a node:sqlite DatabaseSync or a better-sqlite3 Database",
    );
  }
  const file = getLoadablePath();
  if (typeof db.enableLoadExtension === "function") {
    // Node 22.23's enableLoadExtension crashes the process (SIGSEGV) on a closed database
    // opened with allowExtension; isOpen is there from Node 22.15.
    if (db.isOpen === false) {
      throw new Error("libreplica: this node:sqlite database is not open; load into an open one");
    }
    try {
      // allowExtension at construction already enables loading, but the app may have
      // turned it off since; without allowExtension this throws whatever the argument.
      db.enableLoadExtension(true);
    } catch (e) {
      // Node's own message ("...disabled at database creation") does not say which option
      // is missing; the database is only refused for this reason.
      if (e && e.code === "ERR_INVALID_STATE") {
        throw new Error(NOT_ALLOWED, { cause: e });
      }
      throw e;
    }
  }
  db.loadExtension(file);
}

module.exports = { getLoadablePath, load };
