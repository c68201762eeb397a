# frozen_string_literal: true

# libreplica's rake tasks (Libreplica::Tasks does the work). DB is a database.yml name
# (primary, cache...), a database path or a replica URL.
namespace :libreplica do
  desc "Show every database's replication (replica_status()), e.g. rake libreplica:status"
  task status: :environment do
    Libreplica::Tasks.status($stdout)
  end

  desc "Restore a database into a new file, e.g. rake 'libreplica:restore[primary,tmp/restored.sqlite3,2026-11-25T18:00:00Z]'"
  task :restore, %i[db target time] => :environment do |_t, args|
    Libreplica::Tasks.restore($stdout, args[:db], args[:target], args[:time])
  end

  desc "Run a restore drill on every database (or one), e.g. rake 'libreplica:verify[primary]'"
  task :verify, %i[db] => :environment do |_t, args|
    exit(1) unless Libreplica::Tasks.verify($stdout, args[:db])
  end
end
