# frozen_string_literal: true

# libreplica for Ruby: the path of the extension this gem carries, and loading it into a
# SQLite3::Database. Loading it once in a process registers it for every connection opened
# afterwards; loading it again into another connection is harmless.
require "sqlite3"
require_relative "libreplica/version"

module Libreplica
  class Error < StandardError; end

  class << self
    # The absolute path of the .so inside the installed gem.
    def loadable_path
      File.expand_path("libreplica/libreplica.so", __dir__)
    end

    # Loads the extension into `db` (a SQLite3::Database), leaving extension loading
    # disabled again so that SQL cannot load other libraries through it.
    def load(db)
      db.enable_load_extension(true)
      begin
        db.load_extension(loadable_path)
      ensure
        db.enable_load_extension(false)
      end
      db
    end

    # Loads the extension once in this process, into a throwaway in-memory connection, so
    # that every database opened from now on replicates. A forked child inherits the
    # loaded library (it handles the fork itself), so this is per process tree, not per pid.
    # Raises Libreplica::Error with the extension's own message when the load fails (a bad
    # config/litestream.yml, an unset variable a replica path needs).
    def boot!
      return true if @booted
      db = SQLite3::Database.new(":memory:")
      begin
        load(db)
      rescue SQLite3::Exception, RuntimeError => e
        raise Error, e.message
      ensure
        db.close
      end
      @booted = true
    end

    def booted?
      @booted == true
    end

    # A connection for the functions that are about the process rather than one database
    # (replica_status(), replica_restore()), with the extension loaded.
    def connection
      boot!
      SQLite3::Database.new(":memory:")
    end

    # replica_status() as an array of hashes (column name => value), one per database this
    # process has opened and replicates (or stands by for).
    def status
      db = connection
      db.results_as_hash = true
      db.execute("SELECT * FROM replica_status()").map { |row| row.reject { |k, _| k.is_a?(Integer) } }
    ensure
      db&.close
    end

    def version
      db = connection
      db.get_first_value("SELECT replica_version()")
    ensure
      db&.close
    end
  end
end

# The dashboard is a Rack app: loaded on first use, and only where it is packaged.
dashboard = File.expand_path("libreplica/dashboard.rb", __dir__)
Libreplica.autoload(:Dashboard, dashboard) if File.exist?(dashboard)
require_relative "libreplica/railtie" if defined?(::Rails::Railtie)
