import FleetCore
import FleetWatch
import Foundation

/// Verify (and repair) of one watcher instance on its source host: read the watcher's config,
/// compare, and, when asked and safe, send the differences.
struct VerifyRun: Sendable {
  /// The source host.
  var host: any RemoteHost
  /// Its inventory name, for messages.
  var hostName: String
  /// What was asked.
  var request: VerifyRequest

  /// The result for one instance; never throws: a failure is the result's outcome.
  func verify(_ instance: String) async -> DirectoryVerify {
    do {
      return await verify(try await readTarget(instance))
    } catch {
      return DirectoryVerify(
        instance: instance, source: "?", target: "?", sample: request.samplePercent, outcome: .failed,
        detail: "\(error)")
    }
  }

  /// The result for one target (its watcher's config already read).
  func verify(_ target: VerifyTarget) async -> DirectoryVerify {
    var result = DirectoryVerify(
      instance: target.instance, source: target.source, target: target.target.url,
      sample: request.samplePercent,
      outcome: .failed, detail: "")
    do {
      let mode: VerifyRsync.Mode = request.samplePercent.map { .sample(percent: $0) } ?? .check
      let found = try await run(target, mode)
      result.found = found
      guard found.drift else {
        result.outcome = .clean
        result.detail =
          found.summary + (request.samplePercent.map { " (a \(Self.percent($0)) sample)" } ?? "")
        return result
      }
      result.outcome = .drift
      result.detail = "the backup differs: \(found.summary)"
      guard request.repair else {
        result.detail +=
          "; to send the differences: fleetsync verify -i INVENTORY --limit "
          + "\(hostName):\(target.source) --repair (add --delete to also remove the extra entries)"
        return result
      }
      try await repair(target, found, into: &result)
    } catch {
      result.outcome = .failed
      result.detail = "\(error)"
    }
    return result
  }

  /// Runs the repair of a target the check found drifting, unless the source guard refuses it.
  private func repair(_ target: VerifyTarget, _ found: VerifyTally, into result: inout DirectoryVerify)
    async throws
  {
    let seen = try await VerifyRepairGuard.observe(target, on: host)
    if let why = VerifyRepairGuard.refusal(seen, tally: found, target: target, host: hostName) {
      result.outcome = .refused
      result.detail = "repair refused: \(why)"
      return
    }
    let keptExtras = request.delete ? 0 : found.extra
    if keptExtras > 0 && found.differing + found.missing + found.attributes == 0 {
      result.detail =
        "the backup differs: \(found.extra) extra entr\(found.extra == 1 ? "y" : "ies") kept, nothing sent; "
        + "add --delete to remove them (they are kept as versions when the module keeps versions)"
      return
    }
    let sent = try await run(target, .repair(delete: request.delete))
    result.repaired = sent
    result.outcome = keptExtras > 0 ? .drift : .repaired
    result.detail =
      "repaired: sent \(sent.differing) differing and \(sent.missing) missing entries, "
      + "\(sent.attributes) attribute changes, deleted \(request.delete ? sent.extra : 0)"
      + (target.keepsVersions ? " (what was replaced is kept under .fleetsync-versions)" : "")
      + (keptExtras > 0 ? "; \(keptExtras) extra entries kept (add --delete to remove them)" : "")
  }

  /// Reads and parses the watcher's config on the source host.
  private func readTarget(_ instance: String) async throws -> VerifyTarget {
    let path = Layout.watchConf(instance)
    let out = try await host.run("cat \(try ShellQuote.quote(path))")
    guard out.status == 0 else {
      throw FleetError(
        .remoteStep,
        "\(path) cannot be read on \(hostName) (\(out.stderr.trimmingCharacters(in: .whitespacesAndNewlines))): "
          + "is the watcher set up? `fleetsync up -i INVENTORY --limit \(hostName)` sets it up")
    }
    return try VerifyTarget.parse(instance: instance, config: out.stdout)
  }

  /// Runs one rsync of verify and reads its itemized output.
  private func run(_ target: VerifyTarget, _ mode: VerifyRsync.Mode) async throws -> VerifyTally {
    let out = try await host.run(try VerifyRsync.command(target, mode))
    guard out.status == 0 else {
      let tail = out.stderr.split(whereSeparator: \.isNewline).suffix(3).joined(separator: " | ")
      throw FleetError(
        .remoteStep,
        "rsync \(mode == .check || mode.isSample ? "compare" : "repair") of \(target.source) with "
          + "\(target.target.url) exited \(out.status): \(tail)\(Self.hint(out.status, target))")
    }
    return VerifyItemize.tally(out.stdout)
  }

  /// What to check for rsync's exit status `status`.
  static func hint(_ status: Int32, _ target: VerifyTarget) -> String {
    switch status {
    case 4:
      "; the daemon rejected the options: with --repair, its module's filter must let the directories "
        + ".fleetsync-versions/STAMP through (`+ /.fleetsync-versions/*/`), or rsync refuses --backup-dir"
    case 11:
      "; the backup could not write: is the module's directory, and its .fleetsync-versions, writable by "
        + "the daemon's uid on \(target.target.host)?"
    case 5:
      "; the daemon refused the login or the module: is the watcher's password file \(target.passwordFile) "
        + "current? `fleetsync up` rewrites it"
    case 10, 35:
      "; the rsync daemon on \(target.target.host) does not answer: `fleetsync status` shows whether it runs"
    case 23, 24:
      "; some files could not be compared (unreadable, or changed while read): run verify again"
    case 127:
      "; is rsync installed on the source host (and nice, ionice, shuf)?"
    default: ""
    }
  }

  /// `5%`, `0.5%`.
  static func percent(_ value: Double) -> String {
    value == value.rounded() ? "\(Int(value))%" : "\(value)%"
  }
}

extension VerifyRsync.Mode {
  var isSample: Bool {
    if case .sample = self { return true }
    return false
  }
}
