import FleetCore
import FleetInventory
import Foundation

/// Where `fleetsync logs` reads an instance's log, and how far it has read: the journal under
/// systemd (watchers), else the instance's log file (rsync daemons always write theirs).
public enum LogPosition: Sendable, Equatable {
  /// The journal, after this cursor.
  case cursor(String)
  /// The log file, from this byte offset.
  case offset(Int)
}

/// One read of an instance's log: its new lines and where the next read starts.
public struct LogChunk: Sendable, Equatable {
  /// The instance, as `status` names it.
  public var instance: String
  /// New lines, oldest first.
  public var lines: [String]
  /// Where to read on from (nil: unchanged, or the log does not exist yet).
  public var next: LogPosition?
}

/// The script that reads one instance's log, and the parser of what it prints.
enum LogReader {
  /// The shell script: the last `lines` lines (or what came after `after`), then `@@cursor C` or
  /// `@@offset N`, the position to read on from.
  static func script(_ service: ServiceName, lines: Int, after: LogPosition?) throws -> String {
    let unit = try ShellQuote.quote(service.unit)
    let file = try ShellQuote.quote(Layout.logFile(service))
    var journal = "journalctl -u \(unit) --no-pager -o short-iso --show-cursor "
    var tail = "tail -n \(lines) \"$f\"; echo; echo \"@@offset $size\""
    switch after {
    case .cursor(let cursor)?:
      journal += "--after-cursor=\(try ShellQuote.quote(cursor))"
    case .offset(let offset)?:
      tail =
        "off=\(offset); [ \"$size\" -lt \"$off\" ] && off=0; "
        + "tail -c +$((off + 1)) \"$f\" | head -c $((size - off)); echo; echo \"@@offset $size\""
      journal += "-n \(lines)"
    case nil:
      journal += "-n \(lines)"
    }
    let useJournal = service.kind == .watch
    return """
      if \(useJournal ? "[ -d /run/systemd/system ]" : "false") && [ \(after.isFile ? "1" : "0") = 0 ]; then
        \(journal) 2>&1 | sed 's/^-- cursor: /@@cursor /'
      else
        f=\(file); [ -f "$f" ] || { echo "@@none"; exit 0; }
        size=$(stat -c %s "$f")
        \(tail)
      fi
      """
  }

  /// The lines and the next position in what ``script(_:lines:after:)`` printed.
  static func parse(_ output: String, instance: String) -> LogChunk {
    var lines: [String] = []
    var next: LogPosition?
    for line in output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
      if line.hasPrefix("@@cursor ") {
        next = .cursor(String(line.dropFirst("@@cursor ".count)))
      } else if line.hasPrefix("@@offset "), let offset = Int(line.dropFirst("@@offset ".count)) {
        next = .offset(offset)
      } else if line == "@@none" || line == "-- No entries --" {
        continue
      } else {
        lines.append(line)
      }
    }
    while lines.last == "" { lines.removeLast() }
    return LogChunk(instance: instance, lines: lines, next: next)
  }
}

extension Optional where Wrapped == LogPosition {
  fileprivate var isFile: Bool {
    if case .offset? = self { return true }
    return false
  }
}

extension Provisioner {
  /// The instances of host `name` whose logs `logs` reads: all of them, or those `filter` names
  /// (`watch@DIR:BACKUP:MODULE`, `rsyncd@NAME`, a directory's name, or a daemon's).
  ///
  /// - Throws: ``FleetError/Code/invalidInput`` for a host or instance the inventory does not have.
  public func logInstances(host name: String, filter: String?) throws -> [ServiceName] {
    guard inventory.hosts.contains(where: { $0.name == name }) else {
      throw FleetError(.invalidInput, "'\(name)' is not a host of this inventory")
    }
    var all: [ServiceName] = []
    for daemon in inventory.backup(named: name)?.daemons ?? [] {
      all.append(ServiceName(.rsyncd, daemon.name))
    }
    for directory in inventory.source(named: name)?.directories ?? [] {
      for destination in directory.destinations {
        all.append(ServiceName(.watch, Layout.watchInstance(directory: directory.name, to: destination)))
      }
    }
    guard let filter else { return all }
    let chosen = all.filter {
      $0.description == filter || $0.instance == filter || $0.instance.hasPrefix(filter + ":")
    }
    guard !chosen.isEmpty else {
      let names = all.map(\.description).joined(separator: ", ")
      throw FleetError(.invalidInput, "\(name) has no instance '\(filter)'; it has: \(names)")
    }
    return chosen
  }

  /// Reads the logs of `services` on host `name` once: the last `lines` lines of each, or what came
  /// after `positions`.
  public func readLogs(
    host name: String, _ services: [ServiceName], lines: Int, after positions: [String: LogPosition] = [:]
  ) async throws -> [LogChunk] {
    guard let ref = inventory.hosts.first(where: { $0.name == name }) else {
      throw FleetError(.invalidInput, "'\(name)' is not a host of this inventory")
    }
    let host = try await connector.connect(ref)
    do {
      var chunks: [LogChunk] = []
      for service in services {
        let out = try await host.run(
          try LogReader.script(service, lines: lines, after: positions[service.description]))
        var chunk = LogReader.parse(out.stdout, instance: service.description)
        if chunk.next == nil { chunk.next = positions[service.description] }
        chunks.append(chunk)
      }
      await host.close()
      return chunks
    } catch {
      await host.close()
      throw error
    }
  }
}
