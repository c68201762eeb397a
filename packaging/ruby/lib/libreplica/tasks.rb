# frozen_string_literal: true

require "tmpdir"

module Libreplica
  # What the rake tasks do, callable without rake. A task process is one more process on
  # the databases: when the app is running, the app's processes upload and this one stands
  # by (replica_status() says `standby`, naming the uploader's pid).
  module Tasks
    STATUS_COLUMNS = %w[name state local_txid replicated_txid lag_ms pending_bytes last_upload_at uploader last_error].freeze

    module_function

    # database.yml's SQLite databases of the current environment: name => absolute path.
    def databases
      return {} unless defined?(::ActiveRecord::Base)
      env = defined?(::Rails) ? ::Rails.env.to_s : (ENV["RAILS_ENV"] || "development")
      root = defined?(::Rails) && ::Rails.root ? ::Rails.root.to_s : Dir.pwd
      ::ActiveRecord::Base.configurations.configs_for(env_name: env).each_with_object({}) do |c, h|
        hash = c.respond_to?(:configuration_hash) ? c.configuration_hash : c.config
        next unless hash[:adapter].to_s.start_with?("sqlite")
        db = hash[:database].to_s
        next if db.empty? || db.start_with?(":memory:", "file::memory:")
        h[c.name] = File.expand_path(db, root)
      end
    end

    # A database.yml name becomes its file; anything else (a path, a replicated database's
    # name, a replica URL) is for replica_restore() to resolve.
    def resolve(db)
      databases.fetch(db.to_s, db.to_s)
    end

    # replica_status() after opening every database.yml database that exists (a missing one
    # is left alone: opening it would restore it), so that each has its row: a process has
    # rows only for the databases it opened. For the status task and the dashboard.
    def status_rows
      Libreplica.boot!
      with_databases_open { Libreplica.status }
    end

    # Runs the block with every database.yml database that exists open in this process, so
    # that replica_status() has a row for each (the dashboard's page, in a Puma worker that
    # has not yet opened them all).
    def with_databases_open
      open = databases.values.select { |path| File.exist?(path) }.map do |path|
        db = SQLite3::Database.new(path)
        db.get_first_value("SELECT count(*) FROM sqlite_master") # the open is done by now
        db
      end
      yield
    ensure
      open&.each(&:close)
    end

    def status(out)
      rows = status_rows
      out.puts(table(rows, STATUS_COLUMNS))
      databases.each do |name, path|
        out.puts("#{name}: #{path} does not exist yet") unless File.exist?(path)
      end
      rows
    end

    # replica_restore(db, target[, time]) into a new file.
    def restore(out, db, target, time = nil)
      raise ArgumentError, "usage: rake 'libreplica:restore[db,target,time]'" if db.to_s.empty? || target.to_s.empty?
      conn = Libreplica.connection
      args = [resolve(db), File.expand_path(target)]
      args << time.to_s unless time.to_s.empty?
      sql = "SELECT replica_restore(#{(["?"] * args.size).join(", ")})"
      txid = conn.get_first_value(sql, args)
      out.puts("restored #{db} into #{args[1]} at txid #{txid}")
      txid
    ensure
      conn&.close
    end

    # A restore drill per database: replica_verify() where this process uploads it; where
    # another process does (the app is running), replica_verify() cannot read that process's
    # state, so the drill here is a replica_sync() (the uploader shipped everything
    # committed so far) and a full restore of it into a scratch file, integrity-checked.
    # Returns whether every drill passed.
    def verify(out, db = nil)
      Libreplica.boot!
      targets = db.to_s.empty? ? databases : {db.to_s => resolve(db)}
      targets.map do |name, path|
        verify_one(out, name, path)
      end.all?
    end

    def verify_one(out, name, path)
      conn = SQLite3::Database.new(path)
      conn.busy_timeout = 10_000
      begin
        txid = conn.get_first_value("SELECT replica_verify()")
        out.puts("#{name}: ok, replica restored at txid #{txid} matches the database")
      rescue SQLite3::Exception => e
        raise unless e.message.include?("stands by")
        synced = conn.get_first_value("SELECT replica_sync(30000)")
        restored = Dir.mktmpdir("libreplica-verify") do |dir|
          conn.get_first_value("SELECT replica_restore(?, ?)", [path, File.join(dir, "verify.db")])
        end
        raise SQLite3::Exception, "restored txid #{restored} is older than the synced #{synced}" if restored.to_i < synced.to_i
        out.puts("#{name}: ok, replica restored at txid #{restored} (synced #{synced}) passes integrity_check; another process uploads it")
      end
      true
    rescue SQLite3::Exception, Libreplica::Error => e
      out.puts("#{name}: FAILED: #{e.message}")
      false
    ensure
      conn&.close
    end

    # A plain-text table of `rows` (hashes) with `columns`.
    def table(rows, columns)
      cells = [columns] + rows.map { |r| columns.map { |c| r[c].nil? ? "" : r[c].to_s } }
      widths = columns.each_index.map { |i| cells.map { |row| row[i].length }.max }
      cells.map { |row| row.each_with_index.map { |v, i| v.ljust(widths[i]) }.join("  ").rstrip }.join("\n")
    end
  end
end
