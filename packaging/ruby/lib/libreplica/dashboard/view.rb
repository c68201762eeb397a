# frozen_string_literal: true

module Libreplica
  class Dashboard
    # Turns what the extension said into the page (dashboard/index.html.erb). Every value
    # that reaches the HTML goes through `h`: database paths, URLs, error texts and the
    # query string are anyone's text.
    class View
      include ERB::Util

      TEMPLATE = ERB.new(File.read(File.join(TEMPLATE_DIR, "index.html.erb")), trim_mode: "-")
      SPARK_WIDTH = 180
      SPARK_HEIGHT = 44
      # Enough dots to show a history's shape; past that the dots are sampled evenly.
      SPARK_MAX_DOTS = 400

      attr_reader :base, :token, :drill, :rows, :points, :version, :error

      def initialize(base:, token:, drill:, rows:, points:, version:, error:)
        @base, @token, @drill = base, token, drill
        @rows, @points, @version, @error = rows, points, version, error
        @now = Time.now
      end

      def render
        TEMPLATE.result(binding)
      end

      # A page of one sentence, for refusals that are not the dashboard.
      def self.message(text)
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>libreplica</title></head>" \
          "<body><p>#{ERB::Util.html_escape(text)}</p></body></html>\n"
      end

      def state_class(state)
        case state.to_s
        when "up to date" then "ok"
        when "pending", "snapshot pending", "standby", "restoring" then "busy"
        else "bad"
        end
      end

      def lag(ms)
        return "—" if ms.nil?
        ms = ms.to_i
        return "#{ms} ms" if ms < 1000
        seconds = ms / 1000.0
        return format("%.1f s", seconds) if seconds < 60
        minutes, secs = seconds.to_i.divmod(60)
        return "#{minutes} min #{secs} s" if minutes < 60
        hours, minutes = minutes.divmod(60)
        "#{hours} h #{minutes} min"
      end

      def bytes(n)
        return "—" if n.nil?
        n, units = n.to_f, %w[B KiB MiB GiB TiB]
        i = 0
        while n >= 1024 && i < units.size - 1
          n /= 1024.0
          i += 1
        end
        i.zero? ? "#{n.to_i} B" : format("%.1f %s", n, units[i])
      end

      def count(n)
        return "—" if n.nil?
        n.to_i.to_s.reverse.scan(/\d{1,3}/).join(",").reverse
      end

      def usd(x)
        return "—" if x.nil?
        x.to_f < 1 ? format("$%.4f", x.to_f) : format("$%.2f", x.to_f)
      end

      # A status timestamp ("2026-12-03T16:40:01.123Z") as HTML: its date and time, each
      # kept on one line, and how long ago that was; or nil.
      def moment(stamp)
        return nil if stamp.nil? || stamp.to_s.empty?
        at = Time.iso8601(stamp.to_s).utc
        %(<time datetime="#{h(stamp)}"><span class="nw">#{at.strftime("%Y-%m-%d")}</span> ) +
          %(<span class="nw">#{at.strftime("%H:%M:%S")} UTC</span></time>) +
          %(<div class="small">#{h(ago(@now - at))} ago</div>)
      rescue ArgumentError
        h(stamp)
      end

      def ago(seconds)
        seconds = seconds.to_i.clamp(0, nil)
        return "#{seconds} s" if seconds < 90
        return "#{seconds / 60} min" if seconds < 5400
        return "#{seconds / 3600} h" if seconds < 172_800
        "#{seconds / 86_400} d"
      end

      def verify_class(outcome)
        return "" if outcome.nil?
        outcome.start_with?("ok") ? "ok" : "bad"
      end

      # The restore points of one database: an inline SVG with a dot per point (time across,
      # level up: snapshots on top) and a line saying how many and from when to when; or
      # why they could not be read. Returns HTML.
      def restore_points(path)
        value = points[path]
        return %(<span class="bad">#{h(value)}</span>) if value.is_a?(String)
        return "none yet" if value.nil? || value.empty?
        times = value.map { |p| parse_time(p["timestamp"]) }
        known = times.compact
        first, last = known.min, known.max
        summary = "#{count(value.size)} point#{"s" unless value.size == 1}"
        span = if first.nil? then ""
        elsif stamp(first) == stamp(last) then " · #{stamp(first)}"
        else " · #{stamp(first)} → #{stamp(last)}"
        end
        %(#{spark(value, times, first, last)}<div class="small">#{h(summary + span)}</div>)
      end

      private

      def parse_time(text)
        Time.iso8601(text.to_s)
      rescue ArgumentError
        nil
      end

      def stamp(time)
        time.utc.strftime("%m-%d %H:%M")
      end

      def spark(value, times, first, last)
        width, height, pad = SPARK_WIDTH, SPARK_HEIGHT, 4
        range = first && last && last > first ? last - first : nil
        step = [value.size.fdiv(SPARK_MAX_DOTS), 1].max
        dots = (0...value.size).step(step).map(&:floor).uniq.map do |i|
          point, time = value[i], times[i]
          x = if range && time then pad + (time - first) / range * (width - 2 * pad)
          else pad + i.fdiv([value.size - 1, 1].max) * (width - 2 * pad)
          end
          level = point["level"]
          # Levels 0..9 (9: snapshots); a Litestream 0.3 replica's points have none.
          y = level.nil? ? height / 2.0 : height - pad - level.to_i.clamp(0, 9) / 9.0 * (height - 2 * pad)
          tip = "level #{level.nil? ? "-" : level}, txid #{point["min_txid"]}–#{point["max_txid"]}, " \
            "#{point["timestamp"]}, #{bytes(point["size"])}"
          format(%(<circle cx="%.1f" cy="%.1f" r="2.5"><title>%s</title></circle>), x, y, h(tip))
        end
        %(<svg class="spark" width="#{width}" height="#{height}" viewBox="0 0 #{width} #{height}" ) +
          %(role="img" aria-label="restore points over time">) +
          %(<line x1="0" y1="#{height - 1}" x2="#{width}" y2="#{height - 1}"/>#{dots.join}</svg>)
      end
    end
  end
end
