import FleetCore
import FleetHealth
import FleetWatch
import Foundation
import Logging
import Testing

@testable import FleetAgent

/// Which start errors make the agent wait (transient) and which end it with exit 64 (a config that
/// can never work), on the real errors `WatchEngine.init` raises for real files.
@Suite("Agent start failures")
struct StartFailureTests {
  final class Scratch {
    let path: String
    init() throws {
      path = FileManager.default.temporaryDirectory.appendingPathComponent("agent-start-\(UUID())").path
      try FileManager.default.createDirectory(atPath: path + "/src", withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func settings(source: String? = nil, stateDir: String? = nil, passwordFile: String? = nil) throws
      -> AgentSettings
    {
      var config = WatchConfig(
        source: source ?? path + "/src", target: try RsyncTarget.parse("rsync://u@h/m"),
        stateDir: stateDir ?? path + "/state")
      config.passwordFile = passwordFile
      return AgentSettings(watch: config)
    }

    func attempt(_ settings: AgentSettings) -> StartFailure? {
      if case .failure(let failure) = StartRetry.attempt(settings, logger: Logger(label: "test")) {
        return failure
      }
      return nil
    }
  }

  static func state(_ failure: StartFailure?) -> WatchStatus.State? {
    if case .transient(let state, _) = failure { return state }
    return nil
  }

  @Test func aMissingSourceWaitsForTheSource() throws {
    let scratch = try Scratch()
    let failure = scratch.attempt(try scratch.settings(source: scratch.path + "/mnt/data"))
    #expect(Self.state(failure) == .waitingForSource)
    #expect(failure?.description.contains(scratch.path + "/mnt/data") == true)
  }

  @Test func aSourceThatIsAFileWaitsForTheSource() throws {
    let scratch = try Scratch()
    let file = scratch.path + "/plain"
    #expect(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
    #expect(Self.state(scratch.attempt(try scratch.settings(source: file))) == .waitingForSource)
  }

  @Test func aStateDirectoryThatCannotBeMadeIsRetried() throws {
    let scratch = try Scratch()
    let file = scratch.path + "/var"
    #expect(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
    let failure = scratch.attempt(try scratch.settings(stateDir: file + "/lib/fleetsync"))
    #expect(Self.state(failure) == .startFailed)
  }

  @Test func aPasswordFileOthersCanReadCanNeverWork() throws {
    let scratch = try Scratch()
    let password = scratch.path + "/pw"
    #expect(FileManager.default.createFile(atPath: password, contents: Data("pw\n".utf8)))
    chmod(password, 0o644)
    let failure = scratch.attempt(try scratch.settings(passwordFile: password))
    #expect(failure == .permanent(failure?.description ?? ""))
    #expect(failure?.description.contains("chmod 600") == true)
  }

  @Test func aStateDirectoryInsideTheSourceCanNeverWork() throws {
    let scratch = try Scratch()
    let failure = scratch.attempt(try scratch.settings(stateDir: scratch.path + "/src/.state"))
    #expect(failure?.isTransient == false)
    #expect(failure?.description.contains("inside the source") == true)
  }

  /// Only the source and state codes are transient; config, input and password-file errors are not.
  @Test func classificationByCode() {
    let transient: [FleetError.Code] = [.watchSource, .watchState]
    let permanent: [FleetError.Code] = [.agentConfig, .invalidInput, .watchPasswordFile, .internal]
    for code in transient {
      #expect(StartFailure(FleetError(code, "x")).isTransient, "\(code)")
    }
    for code in permanent {
      #expect(StartFailure(FleetError(code, "x")) == .permanent("x"), "\(code)")
    }
    #expect(StartFailure(CancellationError()).isTransient == false)
  }

  /// The retry delay doubles up to a cap that stays under the stall threshold, so a waiting agent
  /// never looks hung to the watchdog.
  @Test func retriesBackOffUnderTheStallThreshold() {
    let delays = (1...12).map { StartRetry.delay(afterFailures: $0) }
    #expect(delays.first == StartRetry.firstDelay)
    #expect(zip(delays, delays.dropFirst()).allSatisfy { $0 <= $1 })
    #expect(delays.last == StartRetry.maxDelay)
    #expect(StartRetry.maxDelay.inSeconds <= WatchStatus.heartbeatStallSeconds / 2)
  }

  /// A waiting agent is unhealthy and says why and what to check, on `/healthz` and the systemd
  /// status line; its watchdog stays fed while the retry loop is alive.
  @Test func aWaitingAgentIsUnhealthyWithTheReason() throws {
    let scratch = try Scratch()
    let settings = try scratch.settings(source: scratch.path + "/mnt/data")
    let now = Date()
    let waiting = StartRetry.waitingStatus(
      .waitingForSource, reason: "source \(scratch.path)/mnt/data cannot be watched", settings: settings,
      retryIn: .seconds(1), now: now)
    let verdict = AgentHealthSource.verdict(for: waiting, now: now)
    #expect(!verdict.isHealthy)
    #expect(verdict.reason.contains("waitingForSource"))
    #expect(verdict.reason.contains("findmnt -T '\(scratch.path)/mnt/data'"), "\(verdict.reason)")
    #expect(NotifierService.statusLine(waiting, now: now).contains("cannot be watched"))
    let current = CurrentEngine(waiting: waiting, settings: settings)
    #expect(current.isAlive(at: now))
    #expect(!current.isAlive(at: now.addingTimeInterval(WatchStatus.heartbeatStallSeconds + 1)))
  }
}
