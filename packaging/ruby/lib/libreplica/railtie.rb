# frozen_string_literal: true

require "rails/railtie"
require_relative "credentials"
require_relative "tasks"

module Libreplica
  # Loads libreplica into a Rails app: once at boot, after config/initializers (which may set
  # config.litestream.* or credentials the config file expands) and before Active Record
  # opens a connection; and into every connection the sqlite3 adapter configures, so a
  # connection opened earlier than that (an initializer that queries) still replicates, and
  # so does every process: a Puma worker forked from a preloaded master inherits the loaded
  # library, and the extension leaves the master's databases to the master by itself.
  #
  # Settings (config/application.rb or an initializer), all optional:
  #   config.libreplica.enabled = false     # do not load (default: load)
  #   config.libreplica.required = true     # a failed load stops the boot (default: in production)
  #   config.libreplica.config_path = "..." # else config.litestream.config_path, else config/litestream.yml
  #   config.libreplica.username / .password # the dashboard's HTTP basic auth fallback
  # and the litestream gem's config.litestream.replica_bucket, replica_key_id,
  # replica_access_key, replica_region, replica_endpoint (or r2_account_id), mapped to the
  # LITESTREAM_* variables config/litestream.yml expands.
  class Railtie < ::Rails::Railtie
    config.libreplica = ActiveSupport::OrderedOptions.new
    # An app moving from the litestream gem keeps its config/initializers/litestream.rb,
    # which sets config.litestream.*: without this it would fail with NoMethodError.
    config.litestream = ActiveSupport::OrderedOptions.new unless config.respond_to?(:litestream)

    # The sqlite3 adapter's configure_connection runs for every new (and reconnected)
    # connection, in whichever process opens it: the README's Active Record snippet.
    module AdapterHook
      private

      def configure_connection
        super
        return unless Libreplica::Railtie.boot
        raw = defined?(@raw_connection) && @raw_connection ? @raw_connection : @connection
        Libreplica.load(raw) if raw.respond_to?(:load_extension)
      end
    end

    # Before a fork (Puma's preloading master forking its workers): a database this process
    # has opened stays this process's to upload after the fork, so the master must outlive
    # its workers' commits (it does under Puma). Said once, naming the databases, where it is
    # made.
    module ForkWarning
      def _fork
        Libreplica::Railtie.warn_before_fork
        super
      end
    end

    initializer "libreplica.fork_warning" do
      Process.singleton_class.prepend(ForkWarning) if Process.respond_to?(:_fork)
    end

    initializer "libreplica.active_record", before: "active_record.initialize_database" do
      ActiveSupport.on_load(:active_record_sqlite3adapter) do
        prepend Libreplica::Railtie::AdapterHook
      end
    end

    initializer "libreplica.load", after: :load_config_initializers do |app|
      Libreplica::Railtie.boot(app)
    end

    rake_tasks do
      load File.expand_path("../tasks/libreplica.rake", __dir__)
    end

    class << self
      # Maps the app's settings to the environment, then loads the extension once in this
      # process. Returns whether it is loaded. A load that fails raises in production (or with
      # config.libreplica.required), else warns and leaves the app running unreplicated: a
      # development machine without the bucket's variables should still boot.
      def boot(app = ::Rails.application)
        return true if Libreplica.booted?
        return false if @disabled || app.nil?
        settings = app.config.libreplica
        if settings.enabled == false
          @disabled = true
          return false
        end
        prepare_environment(app)
        begin
          Libreplica.boot!
        rescue Libreplica::Error => e
          required = settings.required.nil? ? ::Rails.env.production? : settings.required
          raise if required
          @disabled = true
          warn "libreplica: not replicating: #{e.message}"
          return false
        end
        true
      end

      def warn_before_fork
        return if @fork_warned || !Libreplica.booted?
        @fork_warned = true
        own = Libreplica.status.select { |r| r["uploader"].to_s.include?("this process") }
        return if own.empty?
        warn "libreplica: pid #{Process.pid} forks with #{own.map { |r| r["name"] }.join(", ")} open: " \
             "it keeps uploading them for its children (they stand by: their replica_sync() waits " \
             "for it); open no database before forking (no queries in initializers) to have the " \
             "workers upload them"
      rescue StandardError
        nil # a diagnostic: never in the way of the fork
      end

      # The LITESTREAM_* variables from config.litestream / credentials, and the config file.
      def prepare_environment(app)
        Credentials.apply(ENV, [app.config.libreplica, app.config.litestream, credentials(app, :litestream)])
        return if ENV["REPLICA_CONFIG"] || ENV["LITESTREAM_CONFIG"]
        path = config_path(app)
        ENV["LITESTREAM_CONFIG"] = path.to_s if path && File.exist?(path)
      end

      # The config file, absolute, so a process started elsewhere (a runner, a job) finds
      # the same file. Relative `path:` entries inside it still resolve against the working
      # directory, as litestream's do.
      def config_path(app)
        path = app.config.libreplica.config_path || app.config.litestream.config_path
        path ||= app.root.join("config", "litestream.yml") if app.root
        path && File.expand_path(path.to_s, app.root.to_s)
      end

      # A credentials section (`litestream:`, `libreplica:`) as a Hash, or nil.
      def credentials(app, section)
        value = app.credentials.public_send(section)
        value.respond_to?(:to_h) ? value.to_h : nil
      rescue StandardError
        nil # no master key, or no credentials at all: nothing to map
      end

      # The dashboard's HTTP basic auth fallback: config.libreplica.username/password, else
      # the litestream gem's settings (config.litestream.*, LITESTREAM_USERNAME/PASSWORD),
      # else the `libreplica:` or `litestream:` credentials. nil when no password is set:
      # the dashboard must then refuse every request that the host did not authenticate.
      def basic_auth(app = ::Rails.application)
        sources = [app.config.libreplica, app.config.litestream,
                   {username: ENV["LITESTREAM_USERNAME"], password: ENV["LITESTREAM_PASSWORD"]},
                   credentials(app, :libreplica), credentials(app, :litestream)]
        sources = sources.compact.map { |s| Credentials.normalize(s) }
        password = Credentials.find(sources, %i[password])
        return nil unless password
        [Credentials.find(sources, %i[username]) || "libreplica", password]
      end
    end
  end
end
