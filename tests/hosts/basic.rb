# Replicate and restore from Ruby's sqlite3 gem: load on a throwaway :memory: connection,
# then open the real database. Prints key=value lines for tests/hosts.rs.
require "sqlite3"

lib = ENV.fetch("REPLICA_TEST_LIB")

def out(key, value)
  puts "#{key}=#{value}"
  $stdout.flush
end

boot = SQLite3::Database.new(":memory:")
boot.enable_load_extension(true)
boot.load_extension(lib + ".so")
boot.enable_load_extension(false)

db = SQLite3::Database.new("app.db")
out "journal_mode", db.get_first_value("PRAGMA journal_mode")
# The first upload is a snapshot of the new database; syncing before the first write makes
# the txids below independent of when the uploader takes it.
out "initial", db.get_first_value("SELECT replica_sync(10000)")
db.transaction do
  db.execute("CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL, born INTEGER)")
  500.times { |i| db.execute("INSERT INTO people(name, born) VALUES (?, ?)", ["person #{i}", 1900 + i % 120]) }
end
out "sync1", db.get_first_value("SELECT replica_sync(10000)")
db.execute("UPDATE people SET name = upper(name) WHERE id % 3 = 0")
out "sync2", db.get_first_value("SELECT replica_sync(10000)")
out "status", db.execute("SELECT name, state, replicated_txid, pending_txns FROM replica_status()").inspect
out "restored", db.get_first_value("SELECT replica_restore('app.db', 'restored.db')")
out "restored_at_2", db.get_first_value("SELECT replica_restore('app.db', 'at2.db', 2)")
begin
  db.get_first_value("SELECT replica_sync('soon')")
  out "bad_sync", "succeeded"
rescue SQLite3::Exception => e
  out "bad_sync", e.message
end
%w[app.db restored.db at2.db].each do |name|
  c = SQLite3::Database.new(name)
  out "rows #{name}", c.execute("SELECT count(*), sum(born), sum(name = upper(name)) FROM people").first.join(" ")
  c.close
end
