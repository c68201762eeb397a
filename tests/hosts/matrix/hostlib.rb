# What the Ruby hosts of tests/host_matrix.rs share with hostlib.py: the rows, the wait for
# the replica and the key=value report the test reads.
SO = ENV.fetch("REPLICA_TEST_SO")
ROWS = 1000
PER_TXN = 100
SCHEMA = "CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT NOT NULL)"

def out(key, value)
  puts "#{key}=#{value}"
  $stdout.flush
end

def body(host, n)
  format("%s row %04d ", host, n) + "x" * 80
end

# Prints the value `yield` gives, or the error it raised (so the test can say which step failed).
def show(key)
  out key, yield
rescue StandardError => e
  out key, "error: #{e.class}: #{e.message}"
end
