import ArgumentParser
import FleetCore
import FleetInventory
import Foundation

/// Maps a ``FleetError`` to what the user sees and the exit status, in one place.
enum Failure {
  /// The exit status for an error code.
  static func exitCode(for error: FleetError) -> Int32 {
    switch error.code {
    case .invalidInventory: 65
    case .invalidInput: 64
    case .cancelled: 130
    default: 1
    }
  }

  /// Prints `error` (every inventory issue on its own line) to stderr and returns the exit code to throw.
  static func report(_ error: FleetError) -> ExitCode {
    var text = "fleetsync: error: \(error.message)\n"
    if let issues = error.cause as? InventoryIssues {
      text += issues.description + "\n"
    } else if let cause = error.cause {
      text += "  cause: \(cause)\n"
    }
    FileHandle.standardError.write(Data(text.utf8))
    return ExitCode(exitCode(for: error))
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
