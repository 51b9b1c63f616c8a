import FleetCore
import Foundation

@testable import FleetProvision

/// How a ``FakeRemoteHost`` answers `fleetsync-watch resume`: like the agent, by whether the
/// watcher of that config is set up and running.
extension FakeRemoteHost {
  /// The step of a `fleetsync-watch resume` command line, if it is one.
  static func resumeStep(_ command: String) -> FakeStep? {
    let prefix = "'\(Layout.watchBinary)' 'resume' "
    guard command.hasPrefix(prefix) else { return nil }
    let argv = words(command.dropFirst(prefix.count))
    guard argv.count >= 2, argv[0] == "--config" else { return nil }
    return .resume(config: argv[1], flags: Array(argv.dropFirst(2)))
  }

  /// The agent's answer: taken (exit 0) when the watcher runs, withdrawn (75) when it is set up but
  /// stopped, a config error (64) when it is not set up.
  static func resumeOutput(config: String, _ m: Machine) -> CommandOutput {
    let instance = ((config as NSString).lastPathComponent as NSString).deletingPathExtension
    guard m.files[config] != nil else {
      return CommandOutput(
        status: 64, stdout: "fleetsync-watch: error: \(config): the config file does not exist", stderr: "")
    }
    guard m.running["watch@\(instance)"] != nil else {
      return CommandOutput(status: 75, stdout: "release-deletes: not taken within 1 s, withdrawn", stderr: "")
    }
    return CommandOutput(status: 0, stdout: "release-deletes: taken", stderr: "")
  }
}
