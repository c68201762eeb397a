# Active Record 6.1 (Debian's ruby-activerecord): a pool of three connections, the extension
# loaded into each new connection as it is configured (what Rails 8.1's database.yml
# `extensions:` does, and an initializer does for older Rails), three threads writing at
# once, each on its own pooled connection.
require "active_record"
require_relative "hostlib"

ActiveSupport.on_load(:active_record_sqlite3adapter) do
  prepend(Module.new do
    def configure_connection
      super
      db = @raw_connection || @connection # Rails 7.1+ : 6.1 and 7.0
      db.enable_load_extension(true)
      db.load_extension(SO)
      db.enable_load_extension(false)
      # The gem's busy_timeout waits inside SQLite holding Ruby's global lock, so the thread
      # holding the write lock can never commit; a Ruby busy handler sleeps without it
      # (as newer Rails does): up to 30 s.
      db.busy_handler { |count| count < 6000 && sleep(0.005) }
    end

    # Writers take the write lock at BEGIN, as newer Rails does: a deferred transaction that
    # reads first (Active Record's schema queries) and then writes gets SQLITE_BUSY at once.
    def begin_db_transaction
      log("begin immediate transaction", "TRANSACTION") { (@raw_connection || @connection).transaction(:immediate) }
    end
  end)
end

ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: "app.db", pool: 3)
class Item < ActiveRecord::Base; end

ActiveRecord::Base.connection.execute(SCHEMA)
ActiveRecord::Base.connection_pool.release_connection

THREADS = 3
ready = Queue.new
go = Queue.new
connections = Queue.new
errors = Queue.new
threads = (0...THREADS).map do |t|
  Thread.new do
    ActiveRecord::Base.connection_pool.with_connection do |conn|
      connections << conn.object_id
      ready << t
      go.pop # all three hold their own connection before anyone writes
      mine = (0...ROWS).select { |n| n % THREADS == t }
      mine.each_slice(50) do |slice|
        Item.transaction { slice.each { |n| Item.create!(body: body("activerecord-#{t}", n)) } }
      end
    end
  rescue StandardError => e
    errors << "thread #{t}: #{e.class}: #{e.message}"
  end
end
THREADS.times { ready.pop }
THREADS.times { go << true }
threads.each(&:join)
out "connections", Array.new(connections.size) { connections.pop }.uniq.size
out "errors", Array.new(errors.size) { errors.pop }.inspect

conn = ActiveRecord::Base.connection
show("sync") { conn.select_value("SELECT replica_sync(30000)") }
show("journal_mode") { conn.select_value("PRAGMA journal_mode") }
show("status") { conn.select_rows("SELECT name, state, replicated_txid FROM replica_status()").inspect }
show("rows") { Item.count }
