import FleetCore
import FleetHealth
import FleetWatch
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The watcher agent: the replication engine, its health endpoint and systemd notifications,
/// run as one ServiceLifecycle group.
///
/// SIGTERM and SIGINT stop it gracefully (the engine finishes or journals its batch); SIGHUP
/// re-reads the config file and swaps in a new engine, keeping the old one when the new config
/// is bad; SIGUSR1 asks the engine for a full sync.
public enum WatchAgent {
  /// Runs the agent until it is stopped and returns the process exit status.
  ///
  /// Start-up problems are written to `errorOutput` as one `fleetsync-watch: error: ...` block
  /// (every config problem at once) and mapped to the statuses in ``AgentExitStatus``.
  ///
  /// - Parameters:
  ///   - settings: What to run.
  ///   - configFile: The file `settings` came from; SIGHUP re-reads it. `nil` for the quick form.
  ///   - logger: Where the agent and the engine log.
  ///   - notifier: systemd notifications; read from the environment by default.
  ///   - errorOutput: Where start-up errors are written; standard error by default.
  public static func run(
    settings: AgentSettings,
    configFile: String?,
    logger: Logger,
    notifier: SystemdNotifier = .fromProcessEnvironment(),
    errorOutput: @Sendable (String) -> Void = AgentOutput.standardError
  ) async -> Int32 {
    // Trap SIGHUP and SIGUSR1 first: their default action would kill the agent if one came early.
    let controlSignals = await UnixSignalsSequence(trapping: .sighup, .sigusr1)
    var logger = logger
    logger[metadataKey: "source"] = "\(settings.watch.source)"
    // Validates the source and the password file first, with messages that say what to fix. A
    // transient problem (the source not mounted yet) does not stop the agent: it waits, unhealthy.
    let current: CurrentEngine
    switch StartRetry.attempt(settings, logger: logger) {
    case .success(let engine):
      current = CurrentEngine(engine: engine, settings: settings)
    case .failure(.permanent(let message)):
      errorOutput("fleetsync-watch: error: \(message)")
      return AgentExitStatus.usage
    case .failure(.transient(let state, let reason)):
      let waiting = StartRetry.waitingStatus(
        state, reason: reason, settings: settings, retryIn: StartRetry.delay(afterFailures: 1), now: Date())
      logger.warning("cannot start yet, waiting: \(waiting.lastError ?? reason)")
      current = CurrentEngine(waiting: waiting, settings: settings)
    }
    warnAboutPassword(settings, logger: logger)
    let source = AgentHealthSource(current: current)

    var services: [any Service] = []
    if let port = settings.healthPort {
      do {
        let server = try await HealthServer.start(
          host: settings.healthAddress, port: port, source: source, logger: logger)
        services.append(HealthService(server: server))
      } catch let error as FleetError where error.code == .healthPortInUse {
        errorOutput("fleetsync-watch: error: \(error.message)")
        return AgentExitStatus.unavailable
      } catch {
        errorOutput("fleetsync-watch: error: \(describe(error))")
        return AgentExitStatus.usage
      }
    }
    services.append(NotifierService(notifier: notifier, current: current, logger: logger))
    services.append(
      EngineSupervisor(
        current: current, configFile: configFile, signals: controlSignals, notifier: notifier, logger: logger)
    )

    let group = ServiceGroup(
      services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [],
      logger: logger)
    do {
      try await group.run()
      logger.info("stopped")
      return AgentExitStatus.success
    } catch {
      errorOutput("fleetsync-watch: error: \(describe(error))")
      // A config that turned out to be unusable while the agent waited is a usage error too.
      return (error as? StartFailure).map { _ in AgentExitStatus.usage } ?? AgentExitStatus.failure
    }
  }

  static func warnAboutPassword(_ settings: AgentSettings, logger: Logger) {
    guard settings.watch.passwordFile == nil, settings.watch.target.user != nil else { return }
    if ProcessInfo.processInfo.environment["RSYNC_PASSWORD"] == nil {
      logger.warning(
        """
        the target names a user but there is no password-file and RSYNC_PASSWORD is not set; \
        the daemon will refuse the login if its module requires auth
        """)
    }
  }

  /// An error as one readable message: the ``FleetError`` message, or the error's description.
  static func describe(_ error: any Error) -> String {
    if let fleet = error as? FleetError { return fleet.description }
    if let lifecycle = error as? ServiceGroupError { return "service group failed: \(lifecycle)" }
    return String(describing: error)
  }
}

/// Where the agent writes start-up errors.
public enum AgentOutput {
  /// Writes `text` and a newline to standard error.
  public static let standardError: @Sendable (String) -> Void = { text in
    FileHandle.standardError.write(Data((text + "\n").utf8))
  }
}

/// Keeps the health endpoint up until graceful shutdown, then closes it.
struct HealthService: Service {
  let server: HealthServer

  func run() async throws {
    // Ends at graceful shutdown, or with CancellationError when the group is cancelled: close either way.
    try? await gracefulShutdown()
    await server.close()
  }
}

/// Tells systemd the agent is ready, keeps its status line current and pings the watchdog
/// while the engine's heartbeat is fresh.
struct NotifierService: Service {
  let notifier: SystemdNotifier
  let current: CurrentEngine
  let logger: Logger

  func run() async throws {
    guard notifier.isEnabled else {
      // Outside systemd there is nothing to do, but a service that returns would stop the group.
      try? await gracefulShutdown()
      return
    }
    do {
      try notifier.ready(status: statusLine())
    } catch {
      logger.warning("cannot tell systemd that the agent is ready", metadata: ["error": "\(error)"])
    }
    let current = self.current
    let notifier = self.notifier
    let logger = self.logger
    await cancelWhenGracefulShutdown {
      await withTaskGroup(of: Void.self) { group in
        group.addTask {
          await notifier.runWatchdog(isAlive: { current.isAlive() }) {
            logger.warning("watchdog ping failed", metadata: ["error": "\($0)"])
          }
        }
        group.addTask {
          var last = ""
          while !Task.isCancelled {
            let line = NotifierService.statusLine(current.status())
            if line != last {
              try? notifier.status(line)
              last = line
            }
            try? await Task.sleep(for: .seconds(2))
          }
        }
        await group.waitForAll()
      }
    }
  }

  private func statusLine() -> String { Self.statusLine(current.status()) }

  /// The `STATUS=` line for `systemctl status`: state, queue, failures, and a stalled event loop
  /// (the reason the watchdog pings stop).
  static func statusLine(_ status: WatchStatus, now: Date = Date()) -> String {
    var line = "\(status.state.rawValue); queue \(status.queueDepth); in flight \(status.inFlight)"
    if status.state == .waitingForSource || status.state == .startFailed, let reason = status.lastError {
      line += "; \(reason)"
    }
    if let kind = status.lastErrorKind, status.consecutiveFailures > 0 {
      line += "; failing (\(kind.rawValue)) \(status.consecutiveFailures)x"
    }
    if status.isStalled(at: now) {
      line += "; event loop stalled (no heartbeat for \(Int(status.heartbeatAge(at: now))) s)"
    }
    return line
  }
}

/// Runs the current engine, swaps it on SIGHUP, and stops it on graceful shutdown.
struct EngineSupervisor: Service {
  let current: CurrentEngine
  let configFile: String?
  /// SIGHUP (reload) and SIGUSR1 (full sync), trapped before anything else started.
  let signals: UnixSignalsSequence
  let notifier: SystemdNotifier
  let logger: Logger

  enum Event: Sendable {
    case reload
    case fullSync
    case engineEnded(generation: Int, error: (any Error & Sendable)?)
    /// Time for another attempt to make the engine (see ``StartAttempts``).
    case retryStart
    case shutdown
  }

  func run() async throws {
    let (events, sink) = AsyncStream.makeStream(of: Event.self)
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask {
        for await signal in signals {
          sink.yield(signal == .sighup ? .reload : .fullSync)
        }
      }
      defer { group.cancelAll() }
      try await withTaskCancellationOrGracefulShutdownHandler {
        try await supervise(events: events, sink: sink)
      } onCancelOrGracefulShutdown: {
        sink.yield(.shutdown)
      }
    }
  }

  private func supervise(events: AsyncStream<Event>, sink: AsyncStream<Event>.Continuation) async throws {
    var generation = 0
    var running: Task<Void, any Error>?
    // While there is no engine yet (a transient start error), attempts run on a timer.
    var waiting = StartAttempts(sink: sink)
    defer { waiting.cancel() }
    if let engine = current.engine {
      running = start(engine, generation: generation, sink: sink)
    } else {
      waiting.schedule()
    }
    for await event in events {
      switch event {
      case .retryStart:
        guard current.engine == nil, let engine = try waiting.attempt(current, logger: logger) else {
          continue
        }
        current.started(engine)
        running = start(engine, generation: generation, sink: sink)
      case .fullSync:
        guard let engine = current.engine else {
          logger.info("SIGUSR1 ignored: the engine has not started yet")
          continue
        }
        logger.info("SIGUSR1: full sync requested")
        engine.requestFullSync()
      case .reload:
        guard current.engine != nil else {
          if reloadWhileWaiting() { waiting.now() }
          continue
        }
        guard let replacement = reload() else { continue }
        logger.info("SIGHUP: stopping the old engine to switch to the new config")
        running?.cancel()
        _ = await running?.result
        generation += 1
        current.replace(with: replacement.engine, settings: replacement.settings)
        running = start(replacement.engine, generation: generation, sink: sink)
        logger.info("SIGHUP: config reloaded", metadata: ["config": "\(configFile ?? "")"])
      case .engineEnded(let ended, let error):
        guard ended == generation else { continue }
        if let error {
          logger.error(
            "the engine stopped with an error", metadata: ["error": "\(WatchAgent.describe(error))"])
          throw error
        }
        logger.info("the engine stopped")
        return
      case .shutdown:
        logger.info("stopping: letting the engine finish or journal its batch")
        try? notifier.stopping()
        guard let running else { return }
        running.cancel()
        guard let result = await Self.result(of: running, within: Self.stopDeadline) else {
          let message =
            "the engine did not stop within \(Self.stopDeadline) of SIGTERM; exiting anyway: every accepted "
            + "change is in the journal and is sent at the next start"
          logger.error("\(message)")
          return
        }
        if case .failure(let error) = result, !(error is CancellationError) { throw error }
        return
      }
    }
  }

  /// How long a stop waits for the engine to wind down: well inside the unit's `TimeoutStopSec=60`,
  /// so the agent exits by itself (and says so) rather than being killed.
  static let stopDeadline = Duration.seconds(30)

  /// The result of `task`, or nil when it has not ended within `deadline` (the task is left running;
  /// the process is about to exit).
  static func result(of task: Task<Void, any Error>, within deadline: Duration) async -> Result<
    Void, any Error
  >? {
    let answered = Mutex(false)
    return await withCheckedContinuation { (done: CheckedContinuation<Result<Void, any Error>?, Never>) in
      let answer: @Sendable (Result<Void, any Error>?) -> Void = { result in
        if answered.withLock({
          let first = !$0; $0 = true; return first
        }) {
          done.resume(returning: result)
        }
      }
      Task { answer(await task.result) }
      Task {
        try? await Task.sleep(for: deadline)
        answer(nil)
      }
    }
  }

  private func start(_ engine: WatchEngine, generation: Int, sink: AsyncStream<Event>.Continuation)
    -> Task<Void, any Error>
  {
    Task {
      do {
        try await engine.run()
        sink.yield(.engineEnded(generation: generation, error: nil))
      } catch {
        sink.yield(.engineEnded(generation: generation, error: error is CancellationError ? nil : error))
        throw error
      }
    }
  }

  /// Reads the config file again; `nil` (after logging why) when the old engine must keep running.
  private func reload() -> (engine: WatchEngine, settings: AgentSettings)? {
    guard let configFile else {
      logger.warning("SIGHUP ignored: started with command-line options, there is no config file to re-read")
      return nil
    }
    let old = current.snapshot.settings
    do {
      let settings = try AgentSettings.load(file: configFile)
      if settings.healthPort != old.healthPort || settings.healthAddress != old.healthAddress {
        logger.warning("health-address and health-port changes take effect only after a restart")
      }
      let engine = try WatchEngine(config: settings.watch, logger: logger)
      return (engine, settings)
    } catch {
      current.reloadFailed()
      logger.error(
        "SIGHUP: the new config is not used, the old one keeps running",
        metadata: ["error": "\(WatchAgent.describe(error))"])
      return nil
    }
  }
}

extension WatchAgent {
  /// The log levels `--log-level` accepts.
  public static let logLevels = Logger.Level.allCases.map(\.rawValue)

  /// The command line's entry point: reads the settings, sets up logging, runs the agent.
  ///
  /// - Parameters:
  ///   - configFile: `--config FILE`; must not be combined with quick-form options.
  ///   - quickForm: The arguments the command line did not consume: the quick form's options
  ///     (``AgentOptions/parse(_:)``).
  ///   - logLevel: `--log-level`, one of ``logLevels``.
  /// - Returns: The process exit status (``AgentExitStatus``).
  public static func main(configFile: String?, quickForm: [String], logLevel: String) async -> Int32 {
    let errorOutput = AgentOutput.standardError
    guard let level = Logger.Level(rawValue: logLevel) else {
      errorOutput(
        "fleetsync-watch: error: --log-level \(logLevel) is not a level; use one of "
          + logLevels.joined(separator: ", "))
      return AgentExitStatus.usage
    }
    let settings: AgentSettings
    do {
      let options = try AgentOptions.parse(quickForm)
      if let configFile {
        if !options.isEmpty {
          throw FleetError(
            .agentConfig,
            "--config cannot be combined with --source, --target or other settings; put them in \(configFile)"
          )
        }
        settings = try AgentSettings.load(file: configFile)
      } else {
        settings = try AgentSettings.fromOptions(options)
      }
    } catch {
      errorOutput("fleetsync-watch: error: \(describe(error))")
      return AgentExitStatus.usage
    }
    LoggingSystem.bootstrap { label in
      var handler = StreamLogHandler.standardError(label: label)
      handler.logLevel = level
      return handler
    }
    let logger = Logger(label: "fleetsync-watch")
    return await run(settings: settings, configFile: configFile, logger: logger, errorOutput: errorOutput)
  }
}
