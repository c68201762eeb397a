# frozen_string_literal: true

module Libreplica
  # The environment variables config/litestream.yml expands (`$LITESTREAM_REPLICA_BUCKET`
  # and so on, as the litestream gem generates it), filled in the way the litestream gem
  # does before it runs litestream: from `config.litestream.*` (an app's existing
  # initializer keeps working), else from the `litestream:` Rails credentials. A variable
  # already set in the environment always wins, as with the litestream gem (`ENV[...] ||=`).
  # libreplica reads the same names: LITESTREAM_ACCESS_KEY_ID/LITESTREAM_SECRET_ACCESS_KEY
  # are also its fallback credentials for any s3 replica that names none.
  module Credentials
    # Environment variable => the config.litestream / credentials keys that give it, first
    # found wins. `access_key_id`/`secret_access_key` are the spellings many apps' credentials
    # use; the litestream gem's own are replica_key_id/replica_access_key.
    VARIABLES = {
      "LITESTREAM_REPLICA_BUCKET" => %i[replica_bucket bucket],
      "LITESTREAM_REPLICA_REGION" => %i[replica_region region],
      "LITESTREAM_REPLICA_ENDPOINT" => %i[replica_endpoint endpoint],
      "LITESTREAM_ACCESS_KEY_ID" => %i[replica_key_id access_key_id],
      "LITESTREAM_SECRET_ACCESS_KEY" => %i[replica_access_key secret_access_key]
    }.freeze

    # Keys that name a Cloudflare account, from which the R2 endpoint is derived when no
    # endpoint is given.
    ACCOUNT_KEYS = %i[r2_account_id cloudflare_account_id account_id].freeze

    module_function

    # The R2 S3 endpoint of a Cloudflare account.
    def r2_endpoint(account_id)
      "https://#{account_id}.r2.cloudflarestorage.com"
    end

    # Sets the variables that are unset in `env` from `sources` (hashes or
    # ActiveSupport::OrderedOptions, most important first: config.libreplica,
    # config.litestream, credentials.litestream). Returns the names it set (never the
    # values: they hold secrets).
    def apply(env, sources)
      sources = sources.compact.map { |s| normalize(s) }
      set = []
      VARIABLES.each do |var, keys|
        next if present?(env[var])
        value = find(sources, keys)
        if value.nil? && var == "LITESTREAM_REPLICA_ENDPOINT"
          account = find(sources, ACCOUNT_KEYS)
          value = r2_endpoint(account) if account
        end
        next if value.nil?
        env[var] = value
        set << var
      end
      set
    end

    def find(sources, keys)
      sources.each do |source|
        keys.each do |key|
          value = source[key]
          return value.to_s if present?(value)
        end
      end
      nil
    end

    def normalize(source)
      hash = source.respond_to?(:to_h) ? source.to_h : {}
      hash.each_with_object({}) { |(k, v), h| h[k.to_sym] = v }
    end

    def present?(value)
      !value.nil? && !value.to_s.strip.empty?
    end
  end
end
