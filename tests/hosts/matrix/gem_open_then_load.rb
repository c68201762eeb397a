# Ruby's sqlite3 gem: the app opens its database, then loads the extension into that
# same connection.
require "sqlite3"
require_relative "hostlib"

db = SQLite3::Database.new("app.db")
db.enable_load_extension(true)
db.load_extension(SO)
db.enable_load_extension(false)

db.execute(SCHEMA)
(0...ROWS).step(PER_TXN) do |first|
  db.transaction do
    (first...first + PER_TXN).each { |n| db.execute("INSERT INTO items(body) VALUES (?)", [body("ruby", n)]) }
  end
end
show("sync") { db.get_first_value("SELECT replica_sync(30000)") }
show("journal_mode") { db.get_first_value("PRAGMA journal_mode") }
show("status") { db.execute("SELECT name, state, replicated_txid FROM replica_status()").inspect }
show("rows") { db.get_first_value("SELECT count(*) FROM items") }
