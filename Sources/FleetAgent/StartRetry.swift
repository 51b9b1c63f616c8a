import FleetCore
import FleetWatch
import Foundation
import Logging

/// How the agent makes its engine, and retries while the start error is transient (``StartFailure``).
///
/// Attempts back off from ``firstDelay`` to ``maxDelay``, so a source mounted late is picked up within
/// a few seconds; each attempt refreshes the waiting status's heartbeat, so an attempt that hangs (a
/// `stat` on a dead NFS mount) shows as a stalled agent and is restarted by the watchdog.
enum StartRetry {
  /// The wait before the second attempt.
  static let firstDelay: Duration = .milliseconds(500)
  /// The longest wait between attempts; below ``WatchStatus/heartbeatStallSeconds``, so a waiting
  /// agent never looks stalled.
  static let maxDelay: Duration = .seconds(5)

  /// The wait after `failures` failed attempts in a row (1 or more): doubling, capped at ``maxDelay``.
  static func delay(afterFailures failures: Int) -> Duration {
    let doublings = min(max(failures - 1, 0), 16)
    return min(firstDelay * (1 << doublings), maxDelay)
  }

  /// One attempt to make the engine for `settings`.
  static func attempt(_ settings: AgentSettings, logger: Logger) -> Result<WatchEngine, StartFailure> {
    do {
      return .success(try WatchEngine(config: settings.watch, logger: logger))
    } catch {
      return .failure(StartFailure(error))
    }
  }

  /// What `/status` shows while the agent waits in `state` because of `reason`: the reason, what to
  /// check, and when the next attempt runs.
  static func waitingStatus(
    _ state: WatchStatus.State, reason: String, settings: AgentSettings, retryIn: Duration, now: Date
  ) -> WatchStatus {
    var status = WatchStatus(state: state, heartbeat: now)
    status.recordError(.io, reason + "; " + hint(state, settings: settings), at: now)
    status.nextRetryAt = now.addingTimeInterval(retryIn.inSeconds)
    return status
  }

  /// What to check for a waiting `state`; the agent starts by itself once it is fixed.
  static func hint(_ state: WatchStatus.State, settings: AgentSettings) -> String {
    let every = "retrying every \(Int(maxDelay.inSeconds)) s; replication starts by itself once it is fixed"
    switch state {
    case .waitingForSource:
      let source = (try? ShellQuote.quote(settings.watch.source)) ?? settings.watch.source
      return "is its filesystem mounted? (`findmnt -T \(source)`); \(every)"
    default:
      let dir = (try? ShellQuote.quote(settings.watch.stateDir)) ?? settings.watch.stateDir
      return "is its filesystem full or read-only? (`df -h \(dir)`); \(every)"
    }
  }
}

extension Duration {
  /// The duration in seconds, as a floating-point number.
  var inSeconds: Double {
    let (whole, fraction) = components
    return Double(whole) + Double(fraction) / 1e18
  }
}

/// The timer of start attempts while the agent waits for a transient start error to pass; the
/// engine supervisor owns it and runs each attempt when it sends ``EngineSupervisor/Event/retryStart``.
struct StartAttempts {
  let sink: AsyncStream<EngineSupervisor.Event>.Continuation
  /// Failed attempts in a row; the one at start was the first.
  private(set) var failures = 1
  private var timer: Task<Void, Never>?

  init(sink: AsyncStream<EngineSupervisor.Event>.Continuation) { self.sink = sink }

  /// Schedules the next attempt after the backoff for the failures so far.
  mutating func schedule() { schedule(after: StartRetry.delay(afterFailures: failures)) }

  /// Schedules an attempt at once (a reloaded config may have fixed the problem).
  mutating func now() { schedule(after: .zero) }

  /// Stops the timer.
  func cancel() { timer?.cancel() }

  private mutating func schedule(after delay: Duration) {
    timer?.cancel()
    let sink = sink
    timer = Task {
      do { try await Task.sleep(for: delay) } catch { return }
      sink.yield(.retryStart)
    }
  }

  /// Tries to make the engine with `current`'s settings: the engine; or `nil` after showing why in
  /// `current`'s waiting status and scheduling the next attempt.
  ///
  /// - Throws: The ``StartFailure`` when the config turned out to be one that can never work.
  mutating func attempt(_ current: CurrentEngine, logger: Logger) throws -> WatchEngine? {
    let settings = current.snapshot.settings
    switch StartRetry.attempt(settings, logger: logger) {
    case .success(let engine):
      cancel()
      logger.notice("the start problem is gone after \(failures) failed attempt(s): starting replication")
      return engine
    case .failure(.permanent(let message)):
      cancel()
      logger.error("cannot start: \(message)")
      throw StartFailure.permanent(message)
    case .failure(.transient(let state, let reason)):
      failures += 1
      let delay = StartRetry.delay(afterFailures: failures)
      let status = StartRetry.waitingStatus(
        state, reason: reason, settings: settings, retryIn: delay, now: Date())
      if status.lastError != current.status().lastError {
        logger.warning("cannot start yet, waiting: \(status.lastError ?? reason)")
      }
      current.stillWaiting(status)
      schedule(after: delay)
      return nil
    }
  }
}

extension EngineSupervisor {
  /// SIGHUP while there is no engine yet: reads the config file again for the next attempt. Returns
  /// whether it was read (a bad one is logged and counted; the old settings stay).
  func reloadWhileWaiting() -> Bool {
    guard let configFile else {
      logger.warning("SIGHUP ignored: started with command-line options, there is no config file to re-read")
      return false
    }
    do {
      let settings = try AgentSettings.load(file: configFile)
      current.reloadedWhileWaiting(settings: settings)
      logger.info("SIGHUP: config re-read; trying to start with it", metadata: ["config": "\(configFile)"])
      return true
    } catch {
      current.reloadFailed()
      logger.error(
        "SIGHUP: the new config is not used, the old one stays",
        metadata: ["error": "\(WatchAgent.describe(error))"]
      )
      return false
    }
  }
}
