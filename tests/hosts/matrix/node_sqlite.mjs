// Node 22's node:sqlite: the app opens its database with extensions allowed, then loads
// the extension into that connection.
import { DatabaseSync } from "node:sqlite";

const SO = process.env.REPLICA_TEST_SO;
const out = (key, value) => console.log(`${key}=${value}`);
const show = (key, f) => {
  try {
    out(key, f());
  } catch (e) {
    out(key, `error: ${e.name}: ${e.message}`);
  }
};

const db = new DatabaseSync("app.db", { allowExtension: true });
db.loadExtension(SO);

db.exec("CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
const insert = db.prepare("INSERT INTO items(body) VALUES (?)");
for (let first = 0; first < 1000; first += 100) {
  db.exec("BEGIN");
  for (let n = first; n < first + 100; n++) {
    insert.run(`node row ${String(n).padStart(4, "0")} ` + "x".repeat(80));
  }
  db.exec("COMMIT");
}
const value = (sql) => Object.values(db.prepare(sql).get())[0];
show("sync", () => value("SELECT replica_sync(30000)"));
show("journal_mode", () => value("PRAGMA journal_mode"));
show("status", () => JSON.stringify(db.prepare("SELECT name, state, replicated_txid FROM replica_status()").all()));
show("rows", () => value("SELECT count(*) FROM items"));
show("sqlite_version", () => value("SELECT sqlite_version()"));
