import FleetCore
import FleetWatch
import Foundation

/// Whether `fleetsync verify --repair` may send to a backup: never from a source that looks
/// empty, unmounted or replaced, the cases in which the watcher's source guard holds its transfers.
///
/// The policy is ``refusal(_:tally:)``; ``observe(_:on:)`` reads what it needs on the source host.
enum VerifyRepairGuard {
  /// What the source host showed of the source directory just before the repair.
  struct Observation: Equatable {
    /// The source directory's inode; nil when it is missing or not a directory.
    var inode: UInt64?
    /// Whether it holds at least one entry.
    var hasEntries: Bool
    /// The watcher's record of its source (`STATE/source-identity.json`), when it has one.
    var recorded: SourceIdentity?
  }

  /// Why the repair must not run, for people; nil when it may.
  ///
  /// Refused when the source is missing, when it is another directory than the one the watcher
  /// recorded (an empty mountpoint under an unmounted filesystem has its own inode), when it is
  /// empty while the watcher recorded it holding data, and when it is empty while the backup holds
  /// entries the check counted as extra.
  static func refusal(_ seen: Observation, tally: VerifyTally, target: VerifyTarget, host: String) -> String?
  {
    let source = target.source
    let directory = target.instance.prefix { $0 != ":" }
    let check =
      "check that \(source) is mounted and holds the data (`findmnt -T \(source)`, `ls -A \(source)`)"
    let accept =
      "if this really is the source now, accept it with `fleetsync resume -i INVENTORY --accept-source "
      + "--limit \(host) --directory \(directory)`, then repair"
    guard let inode = seen.inode else {
      return "\(source) does not exist or is not a directory; \(check)"
    }
    if let recorded = seen.recorded, recorded.inode != inode {
      return "\(source) is not the directory the watcher recorded (inode \(inode), recorded "
        + "inode \(recorded.inode) on \(recorded.filesystemType)): an unmounted or replaced source?; \(check); \(accept)"
    }
    if !seen.hasEntries, let recorded = seen.recorded, !recorded.empty {
      return "\(source) is empty but the watcher recorded it holding data; \(check); \(accept)"
    }
    if !seen.hasEntries && tally.extra > 0 {
      return
        "\(source) is empty while the backup holds \(tally.extra) entr\(tally.extra == 1 ? "y" : "ies"); "
        + "\(check); \(accept)"
    }
    return nil
  }

  /// Reads the observation on the source host in one command.
  static func observe(_ target: VerifyTarget, on host: any RemoteHost) async throws -> Observation {
    let source = try ShellQuote.quote(target.source)
    var script = """
      \(try SectionedOutput.marker("inode"))
      [ -d \(source) ] && stat -c %i \(source)
      \(try SectionedOutput.marker("entries"))
      [ -d \(source) ] && find \(source) -mindepth 1 -maxdepth 1 | head -n 1 | wc -l

      """
    if let state = target.stateDir {
      let record = try ShellQuote.quote(state + "/" + SourceIdentity.fileName)
      script += "\(try SectionedOutput.marker("identity"))\ncat \(record) 2>/dev/null\n"
    }
    let output = try await host.run(script + "exit 0")
    let sections = SectionedOutput(output.stdout)
    let inode = sections["inode"]?.first.flatMap { UInt64($0.trimmingCharacters(in: .whitespaces)) }
    let entries = sections["entries"]?.first.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } ?? 0
    let json = (sections["identity"] ?? []).joined(separator: "\n")
    let recorded = json.isEmpty ? nil : try? JSONDecoder().decode(SourceIdentity.self, from: Data(json.utf8))
    return Observation(inode: inode, hasEntries: entries > 0, recorded: recorded)
  }
}
