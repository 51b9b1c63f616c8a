import FleetProvision
import Foundation

/// How `restore` and `versions` print their outcome, for people and (`--json`) for machines.
enum RestoreOutput {
  static func lines(_ result: RestoreResult) -> [String] {
    let when = result.at.map { "as of \($0)" } ?? "latest (the mirror)"
    let verb = result.dryRun ? "would restore" : "restored"
    var out = ["\(verb) \(result.source) \(when) from \(result.backup) to \(result.destination)"]
    if !result.versions.isEmpty {
      out.append("versions laid over the mirror (newest first): \(result.versions.joined(separator: " "))")
    }
    out.append(
      result.changes.isEmpty
        ? "nothing to change: the destination already holds that state"
        : "\(result.changes.count) change\(result.changes.count == 1 ? "" : "s")\(result.dryRun ? " (dry run: nothing was changed)" : ""):"
    )
    out += result.changes.map { "  " + $0 }
    if !result.paused.isEmpty {
      out.append("paused and resumed: " + result.paused.map { "watch@\($0)" }.joined(separator: ", "))
    }
    return out + result.notes.map { "note: " + $0 }
  }

  static func lines(_ listing: VersionsListing) -> [String] {
    var out = ["\(listing.place) on \(listing.backup) (protected directory \(listing.directory))"]
    out.append(listing.mirror.isEmpty ? "latest (mirror): not there" : "latest (mirror):")
    out += listing.mirror.map(entryLine)
    let stamps = Array(Set(listing.versions.compactMap(\.stamp))).sorted()
    if stamps.isEmpty { out.append("no versions") }
    for stamp in stamps.reversed() {
      let entries = listing.versions.filter { $0.stamp == stamp }
      out.append("version \(stamp) (restore --at \(stamp) gets back what it holds):")
      out += entries.map(entryLine)
    }
    return out
  }

  static func entryLine(_ entry: BackupEntry) -> String {
    let size = String(entry.size)
    return
      "  \(entry.modified)  \(String(repeating: " ", count: max(0, 12 - size.count)))\(size)  \(entry.kind.prefix(4))  \(entry.path.isEmpty ? "." : entry.path)"
  }

  static func json(_ result: RestoreResult) throws -> String { try encode(result) }

  static func encode(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
  }
}
