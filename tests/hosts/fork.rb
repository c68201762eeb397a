# Ruby's fork from a process that loaded the extension and wrote: the child writes to the
# parent's database (capture stays with the parent) and replicates a database of its own
# with its own uploader thread. Prints key=value lines for tests/hosts.rs.
require "sqlite3"

def out(key, value)
  puts "#{key}=#{value}"
  $stdout.flush
end

boot = SQLite3::Database.new(":memory:")
boot.enable_load_extension(true)
boot.load_extension(ENV.fetch("REPLICA_TEST_LIB") + ".so")
boot.enable_load_extension(false)

db = SQLite3::Database.new("app.db")
db.execute("CREATE TABLE t(x)")
db.execute("INSERT INTO t VALUES ('parent-1')")
out "parent_sync1", db.get_first_value("SELECT replica_sync(10000)")
pid = fork do
  code = 0
  begin
    c = SQLite3::Database.new("app.db")
    c.busy_timeout = 10000
    c.execute("INSERT INTO t VALUES ('child-1')")
    # The parent ships the child's commit (it takes it from the shared WAL): the child's
    # sync waits for that, as a standby process's does.
    begin
      out "child_sync", c.get_first_value("SELECT replica_sync(10000)")
    rescue SQLite3::Exception => e
      out "child_sync_error", e.message
      code = 1
    end
    own = SQLite3::Database.new("child.db")
    own.execute("CREATE TABLE c(y)")
    own.execute("INSERT INTO c VALUES (42)")
    out "child_db_sync", own.get_first_value("SELECT replica_sync(10000)")
  rescue StandardError => e
    out "child_failed", e.message
    code = 1
  end
  exit!(code)
end
Process.wait(pid)
out "child_exit", $?.exitstatus
db.execute("INSERT INTO t VALUES ('parent-2')")
out "parent_sync2", db.get_first_value("SELECT replica_sync(10000)")
db.get_first_value("SELECT replica_restore('app.db', 'r.db')")
out "restored", SQLite3::Database.new("r.db").get_first_value("SELECT group_concat(x) FROM t")
db.get_first_value("SELECT replica_restore('child.db', 'r2.db')")
out "restored_child", SQLite3::Database.new("r2.db").get_first_value("SELECT y FROM c")
