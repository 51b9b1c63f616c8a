import FleetCore
import FleetWatch
import FleetWire

/// The one health probe of fleetsync's instances, as shell run on the node: `up` waits with it
/// until instances answer, `status` reports with it.
///
/// An rsync daemon is healthy when it sends its `@RSYNCD` greeting; a watcher when `/healthz`
/// answers 200. Every read waits 2 s at most.
enum HealthProbe {
  /// Bash functions (``bash(_:)``): `probe KIND PORT` succeeds when the instance answers healthy,
  /// and otherwise leaves a watcher's last answer line in `$last`; `status_body PORT` prints a
  /// watcher's `/status` JSON on one line; `settled PORT` waits for a watcher's first full sync.
  ///
  /// They talk to the instance with bash's own `/dev/tcp` and `read -t`, not `timeout`, `bash -c`,
  /// `sed` or `tr`: a probe starts no process, which is most of what a status pass costs a host.
  /// A read waits 2 s at most; a connection on loopback is refused or accepted at once.
  static let functions = #"""
    http_get() { # port path: the whole answer in $reply; fails when nothing answers
      reply=
      { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
      printf 'GET %s HTTP/1.0\r\n\r\n' "$2" >&3 2>/dev/null
      IFS= read -r -d '' -t 2 reply <&3
      exec 3<&-
      [ -n "$reply" ]
    }
    probe() { # kind port
      if [ "$1" = rsyncd ]; then
        local greeting=
        { exec 3<>"/dev/tcp/127.0.0.1/$2"; } 2>/dev/null || return 1
        IFS= read -r -t 2 greeting <&3
        exec 3<&-
        [[ $greeting == @RSYNCD* ]]
      else
        http_get "$2" /healthz
        case "$reply" in "HTTP/1."?" 200"*) return 0;; esac
        last=${reply%$'\n'}; last=${last##*$'\n'}; last=${last//$'\r'/}; last=${last:0:200}
        return 1
      fi
    }
    status_body() { # port
      http_get "$1" /status
      local body=${reply#*$'\r\n\r\n'}
      [ "$body" = "$reply" ] && body=
      echo "${body//$'\n'/}"
    }
    now() { printf -v now '%(%s)T' -1; }
    settled() { # port: waits (up to $end) until a watcher's first full sync is over and every path was sent;
      failing=  # its /status when paths still fail at the end
      while :; do
        s=$(status_body $1)
        case "$s" in
          *'"failingPathCount":'[1-9]*) failing=$s;;
          *'"state":"initialSync"'*|*'"state":"starting"'*) failing=;;
          *) failing=; return 0;;
        esac
        now; [ $now -ge $end ] && return 0
        sleep 0.5
      done
    }

    """#

  /// `body` run by bash (the functions above need it) from the `sh` that runs remote commands: a
  /// quoted here-document, so nothing in `body` is expanded by `sh`. Bash reads its script from
  /// standard input, which the commands in `body` must leave alone (background jobs get /dev/null).
  static func bash(_ body: String) -> String {
    "bash <<'\(bashEnd)'\n" + body + "\(bashEnd)\n"
  }

  /// The line that ends a ``bash(_:)`` here-document.
  static let bashEnd = "FLEETSYNC_BASH_END"

  /// A script that probes every instance until it answers or `seconds` have passed, and prints
  /// `INSTANCE REASON` for each one that did not.
  static func waitScript(_ services: [DesiredService], seconds: Int) -> String {
    var script = functions + "now; end=$((now + \(seconds)))\n"
    for service in services {
      script += """
        last=; until probe \(service.name.kind.rawValue) \(service.port); do
          now; if [ $now -ge $end ]; then echo "\(service.name) ${last:-not answering on port \(service.port)}"; break; fi
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
    return bash(script)
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
