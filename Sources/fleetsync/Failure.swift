import ArgumentParser
import FleetCore
import FleetInventory
import Foundation

/// Prints what stopped a command; the exit status comes from ``ExitStatus``, the one mapping.
enum Failure {
  /// Prints `error` (every inventory issue on its own line) to stderr and returns the exit code to throw.
  static func report(_ error: FleetError) -> ExitCode {
    var text = "fleetsync: error: \(error.message)\n"
    if let issues = error.cause as? InventoryIssues {
      text += issues.description + "\n"
    } else if let cause = error.cause {
      text += "  cause: \(cause)\n"
    }
    FileHandle.standardError.write(Data(text.utf8))
    return ExitCode(ExitStatus(error).rawValue)
  }
}

/// Runs `body`, turning a ``FleetError`` into a printed message and its exit status.
func reportingFailures<T>(_ body: () async throws -> T) async throws -> T {
  do {
    return try await body()
  } catch let error as FleetError {
    throw Failure.report(error)
  }
}

extension ExitStatus {
  /// Returns for ``ExitStatus/ok``; otherwise ends the command with this status.
  func throwIfNotOK() throws {
    if self != .ok { throw ExitCode(rawValue) }
  }
}

/// The recap lines of multi-host commands, from their hosts' outcomes.
enum HostRecap {
  /// `recap: A ok, B failed, C unreachable, D auth`, the line of `exec` and `push`.
  static func line(_ outcomes: [HostOutcome]) -> String {
    let counts = count(outcomes)
    return "recap: "
      + ["ok", "failed", "unreachable", "auth"].map { "\(counts[$0] ?? 0) \($0)" }
      .joined(separator: ", ")
  }

  /// `VERB: ok=A changed=B failed=C unreachable=D auth=E`, the line of `plan`, `up` and `down`.
  static func line(_ outcomes: [HostOutcome], verb: String) -> String {
    let counts = count(outcomes)
    return "\(verb): "
      + ["ok", "changed", "failed", "unreachable", "auth"].map { "\($0)=\(counts[$0] ?? 0)" }
      .joined(separator: " ")
  }

  private static func count(_ outcomes: [HostOutcome]) -> [String: Int] {
    outcomes.reduce(into: [:]) { $0[$1.word, default: 0] += 1 }
  }
}
