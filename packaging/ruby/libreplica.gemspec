# Built by packaging/ruby/build, which puts the stripped libreplica.so and version.rb into
# lib/libreplica/ of a staged copy first.
require_relative "lib/libreplica/version"

Gem::Specification.new do |s|
  s.name = "libreplica"
  s.version = Libreplica::VERSION
  s.platform = "x86_64-linux"
  s.summary = "SQLite replication to S3/R2 from inside the app process (a loadable extension), with a Railtie"
  s.description = <<~TEXT
    libreplica is a SQLite loadable extension that replicates WAL-mode databases to S3,
    Cloudflare R2 or a directory as Litestream-compatible LTX files, from inside the
    process. This gem carries the compiled extension for x86_64 Linux (glibc 2.34+),
    Libreplica.load(db) for the sqlite3 gem, and a Railtie that loads it when a Rails app
    boots and reads config/litestream.yml unchanged, with rake tasks libreplica:status,
    libreplica:restore and libreplica:verify.
  TEXT
  s.license = "MIT" # as Cargo.toml
  s.authors = ["libreplica contributors"]
  s.required_ruby_version = ">= 2.7"
  s.files = Dir["lib/**/*.rb", "lib/**/*.erb", "lib/**/*.rake", "lib/libreplica/libreplica.so", "README.md"]
  s.require_paths = ["lib"]
  # Only the sqlite3 gem, which Debian's ruby-sqlite3 provides: no native build at install.
  s.add_runtime_dependency "sqlite3", ">= 1.4", "< 3"
end
