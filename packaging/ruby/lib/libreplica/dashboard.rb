# frozen_string_literal: true

# Libreplica::Dashboard: a plain Rack app (no Rails, no Rack gem, no JavaScript) showing
# what `replica_status()` and `replica_restore_points()` say about the databases this
# process replicates, with a "verify now" button running a restore drill (the rake task's,
# `Libreplica::Tasks.verify_one`: it works in whichever Puma worker the POST reaches).
#
#   mount Libreplica::Dashboard => "/replica"          # Rails routes
#   map("/replica") { run Libreplica::Dashboard }      # config.ru (Sinatra, Roda, plain Rack)
#
# Who may see it: a request the host vouches for (`Libreplica::Dashboard.authorize =
# ->(request) { ... }`, or `env["libreplica.authorized"]` set by a middleware of the host's),
# else HTTP basic auth against `Libreplica::Dashboard.username`/`password` (default: the
# LIBREPLICA_USERNAME/LIBREPLICA_PASSWORD environment, then in a Rails app what
# `Libreplica::Railtie.basic_auth` finds (config.libreplica, the litestream gem's settings,
# the `libreplica:` and `litestream:` credentials, so an app moving from that gem keeps its
# dashboard login), else the LITESTREAM_USERNAME/PASSWORD environment and those credentials).
# Neither: 401, never an open page.
#
# Where it reads: `Libreplica::Dashboard.connection = -> { SQLite3::Database.new(path) }`
# (called once per process), else Active Record's pool, else an in-memory connection: the
# extension's functions answer for every database of the process in any connection.
# The verify button's tokens are signed with `Libreplica::Dashboard.secret` (default:
# LIBREPLICA_DASHBOARD_SECRET, SECRET_KEY_BASE, Rails' secret_key_base, the password, else
# a random key made when this file loads, which Puma workers share after `preload_app!`).

require "cgi"
require "erb"
require "openssl"
require "securerandom"
require "stringio"
require "time"
require "uri"

module Libreplica
  class Dashboard
    TEMPLATE_DIR = File.join(__dir__, "dashboard")
    CSRF_COOKIE = "libreplica_csrf"
    CSRF_FIELD = "authenticity_token"
    STATUS_COLUMNS = %w[name path replica_url state lag_ms pending_bytes last_upload_at last_error
      requests_month requests_month_projected request_cost_month_usd request_budget
      last_verify_at last_verify uploader warnings].freeze
    # No script may run on the page at all, and no other site may frame it (the verify
    # button is a state change a framing page could trick a click onto).
    SECURITY_HEADERS = {
      "content-security-policy" => "default-src 'none'; style-src 'unsafe-inline'; " \
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
      "x-frame-options" => "DENY",
      "x-content-type-options" => "nosniff",
      "referrer-policy" => "same-origin",
      "cache-control" => "no-store"
    }.freeze

    class << self
      attr_writer :username, :password, :secret
      # A callable given the request (a Rack::Request where the rack gem is loaded, else the
      # Request below; both have #env); truthy means the host has authenticated and
      # authorized this request itself, e.g. `->(r) { r.env["warden"]&.user&.admin? }`.
      attr_accessor :authorize
      # Restore points come from the replica (a LIST and a ranged GET per file on S3): a page
      # view reuses them for this many seconds rather than paying for them every time.
      attr_accessor :restore_points_ttl

      # A callable returning a SQLite3::Database with the extension loaded. It is called once
      # per process (again after a fork: Puma workers must not share a parent's connection).
      def connection=(callable)
        @connection = callable
        @cached = nil
      end

      def username
        @username || ENV["LIBREPLICA_USERNAME"] || railtie_auth&.first || credential(:libreplica, :username) ||
          ENV["LITESTREAM_USERNAME"] || credential(:litestream, :username)
      end

      def password
        @password || ENV["LIBREPLICA_PASSWORD"] || railtie_auth&.last || credential(:libreplica, :password) ||
          ENV["LITESTREAM_PASSWORD"] || credential(:litestream, :password)
      end

      # The key the CSRF tokens are signed with: a token someone else planted in the cookie
      # (from a sibling subdomain) is worthless without it. Every worker of an app must
      # agree on it, hence the app's own secret first; the random last resort is made when
      # this file loads, so Puma workers forked after `preload_app!` share it too.
      def secret
        @secret || ENV["LIBREPLICA_DASHBOARD_SECRET"] || ENV["SECRET_KEY_BASE"] ||
          rails_secret || password || @random_secret
      end

      def call(env)
        new.call(env)
      end

      # Runs the block with a connection the extension is loaded in.
      def with_connection(&block)
        if @connection
          with_cached(&block)
        elsif defined?(::ActiveRecord::Base) && ::ActiveRecord::Base.respond_to?(:connection_pool)
          ::ActiveRecord::Base.connection_pool.with_connection { |c| block.call(c.raw_connection) }
        else
          # The extension's functions are process-wide: any connection it is loaded in
          # sees every database this process replicates.
          @connection = method(:default_connection)
          with_cached(&block)
        end
      end

      # `lock`: one query at a time on the cached connection; `cache_lock` guards the
      # restore points' cache, read while the connection is held.
      attr_reader :restore_points_cache, :lock, :cache_lock

      private

      def with_cached
        lock.synchronize do
          if @cached.nil? || @cached_pid != Process.pid
            @cached = @connection.call
            @cached_pid = Process.pid
          end
          yield @cached
        end
      end

      def default_connection
        require "sqlite3"
        db = ::SQLite3::Database.new(":memory:")
        # Once loaded anywhere in the process, the extension's functions are in every
        # connection opened after; loading it here too covers an app that has not yet.
        ::Libreplica.load(db) if ::Libreplica.respond_to?(:load)
        db
      end

      # [username, password] as the Railtie reads them from the app's settings and
      # credentials (one place for that mapping), or nil outside Rails or without a password.
      def railtie_auth
        return nil unless defined?(::Libreplica::Railtie) && ::Libreplica::Railtie.respond_to?(:basic_auth)
        return nil unless defined?(::Rails) && ::Rails.respond_to?(:application) && ::Rails.application
        ::Libreplica::Railtie.basic_auth(::Rails.application)
      rescue StandardError
        nil
      end

      def credential(group, key)
        return nil unless defined?(::Rails) && ::Rails.respond_to?(:application) && ::Rails.application
        config = ::Rails.application.credentials.config
        (config[group] || {})[key]&.to_s
      rescue StandardError
        nil
      end

      def rails_secret
        return nil unless defined?(::Rails) && ::Rails.respond_to?(:application) && ::Rails.application
        ::Rails.application.secret_key_base
      rescue StandardError
        nil
      end
    end

    self.restore_points_ttl = 60
    # Made here, not lazily: two threads' first requests would each make their own.
    @lock = Mutex.new
    @cache_lock = Mutex.new
    @restore_points_cache = {}
    @random_secret = SecureRandom.hex(32)

    # The little of a Rack request the dashboard needs, without requiring the rack gem.
    class Request
      attr_reader :env

      def initialize(env)
        @env = env
      end

      def request_method
        env["REQUEST_METHOD"].to_s
      end

      # The path below the mount point, without a trailing slash ("" for the page itself).
      def path
        env["PATH_INFO"].to_s.sub(%r{/+\z}, "")
      end

      # Where the dashboard is mounted ("/replica"), for its links, form and cookie.
      def base
        env["SCRIPT_NAME"].to_s.sub(%r{/+\z}, "")
      end

      def https?
        env["HTTPS"] == "on" || env["rack.url_scheme"] == "https"
      end

      def cookies
        @cookies ||= CGI::Cookie.parse(env["HTTP_COOKIE"].to_s).transform_values(&:first)
      end

      def form
        @form ||= begin
          input = env["rack.input"]
          body = input ? input.read(64 * 1024).to_s : ""
          input.rewind if input.respond_to?(:rewind)
          URI.decode_www_form(body).to_h
        rescue ArgumentError
          {}
        end
      end

      def query
        URI.decode_www_form(env["QUERY_STRING"].to_s).to_h
      rescue ArgumentError
        {}
      end

      # [user, password] from an Authorization: Basic header, or nil.
      def basic_credentials
        header = env["HTTP_AUTHORIZATION"].to_s
        return nil unless header.start_with?("Basic ")
        decoded = header.delete_prefix("Basic ").unpack1("m").force_encoding(Encoding::UTF_8)
        user, pass = decoded.split(":", 2)
        pass && [user, pass]
      end
    end

    def call(env)
      request = Request.new(env)
      return unauthorized unless allowed?(request)
      method, path = request.request_method, request.path
      if path == "" && method == "GET"
        page(request)
      elsif path == "" && method == "HEAD"
        # Rack::Lint wants a HEAD response without a body.
        page(request).tap { |response| response[2] = [] }
      elsif path == "/verify" && method == "POST"
        verify(request)
      elsif ["", "/verify"].include?(path)
        plain(405, "method not allowed\n", "allow" => path.empty? ? "GET, HEAD" : "POST")
      else
        plain(404, "not found\n")
      end
    end

    private

    # -- who may see it ------------------------------------------------------------------

    def allowed?(request)
      return true if request.env["libreplica.authorized"]
      if (authorize = self.class.authorize)
        return true if authorize.call(defined?(::Rack::Request) ? ::Rack::Request.new(request.env) : request)
      end
      user, pass = self.class.username, self.class.password
      return false if user.to_s.empty? || pass.to_s.empty?
      given = request.basic_credentials or return false
      # Both compared whatever the first said, in time independent of where they differ.
      same(given[0], user) & same(given[1], pass)
    end

    # Compares digests, so neither the length nor the first differing byte of a secret shows
    # in the time taken (OpenSSL.fixed_length_secure_compare is not in Ruby 2.7's openssl).
    def same(a, b)
      x = OpenSSL::Digest::SHA256.digest(a.to_s).bytes
      y = OpenSSL::Digest::SHA256.digest(b.to_s).bytes
      x.zip(y).reduce(0) { |acc, (i, j)| acc | (i ^ j) }.zero?
    end

    def unauthorized
      body = "authentication required: mount the dashboard behind your app's own authentication " \
        "(Libreplica::Dashboard.authorize), or set Libreplica::Dashboard.username/password " \
        "(LIBREPLICA_USERNAME/LIBREPLICA_PASSWORD)\n"
      plain(401, body, "www-authenticate" => %(Basic realm="libreplica", charset="UTF-8"))
    end

    # -- CSRF: a random nonce in a SameSite cookie, the form carrying its signature --------

    def csrf_nonce(request)
      nonce = request.cookies[CSRF_COOKIE].to_s
      nonce.match?(/\A[0-9a-f]{64}\z/) ? nonce : nil
    end

    def csrf_token(nonce)
      OpenSSL::HMAC.hexdigest("SHA256", self.class.secret, "libreplica-dashboard:#{nonce}")
    end

    def csrf_valid?(request)
      nonce = csrf_nonce(request) or return false
      same(request.form[CSRF_FIELD], csrf_token(nonce))
    end

    def csrf_cookie(request, nonce)
      path = request.base.empty? ? "/" : request.base
      secure = request.https? ? "; Secure" : ""
      "#{CSRF_COOKIE}=#{nonce}; Path=#{path}; HttpOnly; SameSite=Strict#{secure}"
    end

    # -- the page --------------------------------------------------------------------------

    def page(request)
      nonce = csrf_nonce(request)
      headers = {}
      unless nonce
        nonce = SecureRandom.hex(32)
        headers["set-cookie"] = csrf_cookie(request, nonce)
      end
      view = View.new(
        base: request.base,
        token: csrf_token(nonce),
        drill: reported_drill(request.query),
        **snapshot
      )
      html(200, view.render, headers)
    end

    # What the page shows, read in one go: the status rows, each database's restore points
    # (cached), the extension's version; a failure is shown rather than raised.
    def snapshot
      rows, points, version, error = [], {}, nil, nil
      self.class.with_connection do |db|
        Tasks.with_databases_open do
          version = query(db, "SELECT replica_version() AS v").dig(0, "v")
          rows = query(db, "SELECT #{STATUS_COLUMNS.join(", ")} FROM replica_status()")
          rows.each do |row|
            # A running restore's row is a target, not a replicated database.
            points[row["path"]] = restore_points(db, row["path"]) unless row["state"] == "restoring"
          end
        end
      end
      {rows: rows, points: points, version: version, error: error}
    rescue StandardError => e
      {rows: rows, points: points, version: version, error: "#{e.class}: #{e.message}"}
    end

    def restore_points(db, path)
      cache = self.class.restore_points_cache
      hit = self.class.cache_lock.synchronize { cache[path] }
      return hit[:value] if hit && Process.clock_gettime(Process::CLOCK_MONOTONIC) < hit[:until]
      value = begin
        query(db, "SELECT level, min_txid, max_txid, timestamp, size FROM replica_restore_points(?)", path)
      rescue StandardError => e
        e.message
      end
      ttl = self.class.restore_points_ttl.to_f
      stamp = Process.clock_gettime(Process::CLOCK_MONOTONIC) + ttl
      self.class.cache_lock.synchronize { cache[path] = {value: value, until: stamp} }
      value
    end

    # Rows as hashes whatever the connection's results_as_hash says.
    def query(db, sql, *params)
      stmt = db.prepare(sql)
      begin
        stmt.bind_params(*params) unless params.empty?
        columns = stmt.columns
        stmt.to_a.map { |values| columns.zip(values).to_h }
      ensure
        stmt.close
      end
    end

    # -- verify now ------------------------------------------------------------------------

    def verify(request)
      return plain(403, "refused: the form's CSRF token is missing or wrong; reload the page\n") unless csrf_valid?(request)
      path = request.form["db"].to_s
      outcome = nil
      self.class.with_connection do |db|
        Tasks.with_databases_open do
          next unless query(db, "SELECT path FROM replica_status()").any? { |r| r["path"] == path }
          outcome = drill(db, path)
        end
      end
      return html(422, View.message("No replicated database at #{path}.")) unless outcome
      self.class.cache_lock.synchronize { self.class.restore_points_cache.delete(path) }
      [303, SECURITY_HEADERS.merge("location" => "#{request.base}/?#{signed_outcome(path, outcome)}",
        "content-type" => "text/plain"), []]
    end

    # Runs the drill as `rake libreplica:verify` does (Tasks.verify_one): replica_verify()
    # where this process uploads the database; where another process does (a Puma worker
    # standing by for its sibling, which replica_verify() may refuse), a replica_sync() and
    # a full restore of the replica, integrity-checked. Its outcome as
    # replica_status().last_verify words it when this drill set that, else from the task's
    # line; either way starting "ok" or "failed".
    def drill(db, path)
      before = last_verify(db, path)
      out = StringIO.new
      passed = Tasks.verify_one(out, path, path)
      after = last_verify(db, path)
      return after["last_verify"] if after && after != before && after["last_verify"]
      line = out.string.strip.delete_prefix("#{path}: ")
      return "failed: #{line.delete_prefix("FAILED: ")}" unless passed
      "ok: txid #{line[/txid (\d+)/, 1]} (#{line.delete_prefix("ok, ")})"
    rescue StandardError => e
      "failed: #{e.class}: #{e.message}"
    end

    # This process's last drill of `path`: {"last_verify_at" =>, "last_verify" =>}, or nil.
    def last_verify(db, path)
      row = query(db, "SELECT path, last_verify_at, last_verify FROM replica_status()").find { |r| r["path"] == path }
      row&.slice("last_verify_at", "last_verify")
    rescue StandardError
      nil
    end

    # The page after the redirect may come from another worker, whose status has not seen
    # this process's drill: the outcome travels in the query, signed so that no link can
    # make the page claim a drill that did not happen. With it, the pid of the process that
    # ran the drill (which Puma worker: a standby's drill is a restore, not replica_verify).
    def signed_outcome(path, outcome)
      at = Time.now.to_i.to_s
      pid = Process.pid.to_s
      outcome = outcome[0, 600]
      URI.encode_www_form("verified" => path, "outcome" => outcome, "at" => at, "pid" => pid,
        "sig" => outcome_signature(path, outcome, at, pid))
    end

    def outcome_signature(path, outcome, at, pid)
      OpenSSL::HMAC.hexdigest("SHA256", self.class.secret, ["libreplica-drill", path, outcome, at, pid].join("\0"))
    end

    # The drill the query reports, when its signature holds and it is recent; else nil.
    def reported_drill(query)
      path, outcome, at, pid, sig = query.values_at("verified", "outcome", "at", "pid", "sig").map(&:to_s)
      return nil unless same(sig, outcome_signature(path, outcome, at, pid))
      return nil unless (Time.now.to_i - at.to_i).between?(0, 600)
      {path: path, outcome: outcome, at: Time.at(at.to_i).utc, pid: pid}
    end

    # -- responses -------------------------------------------------------------------------

    def html(code, body, headers = {})
      [code, SECURITY_HEADERS.merge("content-type" => "text/html; charset=utf-8").merge(headers), [body]]
    end

    def plain(code, body, headers = {})
      [code, SECURITY_HEADERS.merge("content-type" => "text/plain; charset=utf-8").merge(headers), [body]]
    end
  end
end

require_relative "dashboard/view"
# The drill and the database.yml databases, shared with the rake tasks (Rails not needed).
require_relative "tasks"
