import FleetCore
import FleetWatch
import FleetWire

/// The one health probe of fleetsync's instances, as shell run on the node: `up` waits with it
/// until instances answer, `status` reports with it.
///
/// An rsync daemon is healthy when it sends its `@RSYNCD` greeting; a watcher when `/healthz`
/// answers 200. Every connection attempt is bounded (2 s).
enum HealthProbe {
  /// Shell functions: `probe KIND PORT` succeeds when the instance answers healthy, and otherwise
  /// leaves a watcher's last answer line in `$last`; `status_body PORT` prints a watcher's
  /// `/status` JSON on one line.
  static let functions = #"""
    probe() { # kind port
      if [ "$1" = rsyncd ]; then
        timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$2 && head -c 12 <&3" 2>/dev/null | grep -q '@RSYNCD'
      else
        r=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$2 && printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null)
        case "$r" in "HTTP/1."?" 200"*) return 0;; esac
        last=$(printf '%s' "$r" | tail -n 1 | tr -d '\r' | cut -c1-200)
        return 1
      fi
    }
    status_body() { # port
      timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'GET /status HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null |
        sed '1,/^\r*$/d' | tr -d '\n'
      echo
    }
    settled() { # port: waits (up to $end) until a watcher's first full sync is over and every path was sent;
      failing=  # its /status when paths still fail at the end
      while :; do
        s=$(status_body $1)
        case "$s" in
          *'"failingPathCount":'[1-9]*) failing=$s;;
          *'"state":"initialSync"'*|*'"state":"starting"'*) failing=;;
          *) failing=; return 0;;
        esac
        [ $(date +%s) -ge $end ] && return 0
        sleep 0.5
      done
    }

    """#

  /// A script that probes every instance until it answers or `seconds` have passed, and prints
  /// `INSTANCE REASON` for each one that did not.
  static func waitScript(_ services: [DesiredService], seconds: Int) -> String {
    var script = "end=$(( $(date +%s) + \(seconds) ))\n" + functions
    for service in services {
      script += """
        last=; until probe \(service.name.kind.rawValue) \(service.port); do
          if [ $(date +%s) -ge $end ]; then echo "\(service.name) ${last:-not answering on port \(service.port)}"; break; fi
          sleep 0.2
        done

        """
      if service.name.kind == .watch {
        // Answering is not enough: a full sync that could not send some paths (an unwritable
        // module, exit 23) fails the instance, with the watcher's /status as the reason.
        script += """
          probe watch \(service.port) && settled \(service.port) && [ -n "$failing" ] && echo "\(service.name) \(Self.failingMarker)$failing"

          """
      }
    }
    return script
  }

  /// The instances a ``waitScript(_:seconds:)`` run reported, with what each said.
  static func failures(in output: String) -> [String: String] {
    var failed: [String: String] = [:]
    for line in output.split(separator: "\n") {
      let parts = line.split(separator: " ", maxSplits: 1)
      guard parts.count == 2 else { continue }
      let reason = parts[1]
      failed[String(parts[0])] =
        reason.hasPrefix(failingMarker)
        ? failingReason(status: reason.dropFirst(failingMarker.count)) : String(reason)
    }
    return failed
  }
}

extension HealthProbe {
  /// What precedes a watcher's `/status` JSON in a ``waitScript(_:seconds:)`` line: it answers, but
  /// cannot send some paths to the backup.
  static let failingMarker = "@failing "

  /// The reason for a ``failingMarker`` line: how many paths, the first with rsync's error, what
  /// to check and the command that resolves it.
  static func failingReason(status json: some StringProtocol) -> String {
    guard let document = try? AgentStatusDocument<WatchStatus>.decode(json: json) else {
      return "it cannot send some paths to the backup (see `fleetsync status`)"
    }
    let status = document.engine
    let count = status.failingPathCount ?? 0
    var reason = "\(count) path\(count == 1 ? "" : "s") cannot be sent to \(document.target)"
    if let first = status.failingPaths?.first { reason += " (first \"\(first.path)\": \(first.error))" }
    return reason
      + "; check the backup's module directory and what is in it: the rsync daemon writes as its"
      + " `uid`/`gid`, which must own it (e.g. `chown -R nobody:nogroup DIR`), then run `fleetsync up` again"
  }
}
